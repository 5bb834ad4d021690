import VMController

/// The VM controller is the pod's VM: its life cycle and queries already have the shapes
/// `PodVM` asks for; the guest is the agent's channels while the VM runs.
extension VMController: PodVM {
    public func guest() async -> (any PodGuest)? {
        agentChannels.map { AgentGuest(channels: $0) }
    }

    public func shares() async -> (any ContainerShares)? { plan9 }

    public func disks() async -> (any ContainerDisks)? { scsi }

    public func devices() async -> (any ContainerDevices)? { vpci }

    public func waitTerminated() async { _ = await wait() }
}

extension SCSIController: ContainerDisks {}

extension VPCIController: ContainerDevices {}

extension Plan9Controller: ContainerShares {}
