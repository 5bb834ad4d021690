import AgentAPI
import ContainerdAPI
import SkiffSupport
import SwiftProtobuf
import VMController

// The narrow interfaces of the pod, container and process controllers, split into what they
// need of the host (the VM and its shares) and of the guest (the agent). The VM controller
// and the agent client provide them (`VMController+PodVM.swift`, `AgentGuest.swift`); tests
// substitute fakes that fail on demand.

// MARK: Host

/// What the pod controller needs of its utility VM.
public protocol PodVM: Sendable {
    /// Where the VM keeps its state (durable intent: written into every bundle).
    var stateDirectory: String { get }
    func createVM(options: VMOptions) async throws
    func startVM(bootTimeout: Duration) async throws
    /// Idempotent: a VM that is gone or never started is no failure.
    func terminateVM() async throws
    /// Returns once the VM has ended, whoever ended it (QEMU killed, the guest panicked, or
    /// `terminateVM`).
    func waitTerminated() async
    /// Joins the pod's network namespace on the host (the CNI one) to the VM: its interfaces
    /// become the VM's NICs. A no-op for the namespace already joined.
    func setUpNetwork(netns: String) async throws
    /// The agent while the VM runs; nil otherwise.
    func guest() async -> (any PodGuest)?
    /// Host paths shared into the VM, once it exists.
    func shares() async -> (any ContainerShares)?
    /// Disk images attached to the VM (SCSI), once it runs.
    func disks() async -> (any ContainerDisks)?
    /// PCI devices assigned to the VM (vPCI), once it runs.
    func devices() async -> (any ContainerDevices)?
    /// The agent's threads, for diagnostics.
    func dumpStacks() async throws -> String
}

/// Makes the pod's VM controller: `(vm id, state directory)`.
public typealias PodVMFactory = @Sendable (_ id: String, _ stateDirectory: String) -> any PodVM

/// Host files and directories shared into the VM (the Plan9 sub-controller): reserve, map to
/// a guest path, unmap; refcounted by identical reservations.
public protocol ContainerShares: Sendable {
    func reserve(hostPath: String, readOnly: Bool) async throws -> Plan9Controller.ShareID
    func mapToGuest(_ id: Plan9Controller.ShareID) async throws -> String
    func unmapFromGuest(_ id: Plan9Controller.ShareID) async throws
}

/// Disk images and host block devices attached to the VM and mounted in the guest, or found
/// there as raw devices (the SCSI sub-controller): reserve, map into the guest, unmap; the same
/// path with the same mode and mount shares one attachment.
public protocol ContainerDisks: Sendable {
    func reserve(hostPath: String, readOnly: Bool, mount: SCSIController.MountConfig) async throws -> SCSIController.DiskID
    /// Where the disk is mounted in the guest (a raw disk: its device's path), and its device.
    func mapDeviceToGuest(_ id: SCSIController.DiskID) async throws -> (mountPath: String, device: GuestBlockDevice)
    func unmapFromGuest(_ id: SCSIController.DiskID) async throws
}

/// PCI devices assigned to the VM (the vPCI sub-controller): reserve by identity, add (the
/// guest has it with a driver bound), remove; refcounted by identity.
public protocol ContainerDevices: Sendable {
    func reserve(_ device: VPCIController.Device) async throws -> VPCIController.DeviceID
    func addToVM(_ id: VPCIController.DeviceID) async throws -> GuestPCIDevice
    func removeFromVM(_ id: VPCIController.DeviceID) async throws
    /// What the VM holds, for diagnostics.
    var assignments: [VPCIController.Assignment] { get async }
}

/// Mounts containerd's rootfs mounts on the host (into the bundle, which the guest sees).
public protocol RootfsMounter: Sendable {
    func mount(_ mounts: [Containerd_Types_Mount], at target: String) throws(SkiffError)
    func unmount(_ target: String) throws(SkiffError)
}

/// Where task events go (containerd's event service, through the shim's publisher): in the
/// order they are published.
public protocol TaskEvents: Sendable {
    func publish(topic: String, _ event: any SwiftProtobuf.Message) async
}

// MARK: Guest

/// How a process of the guest ended, as the agent reports it.
public struct GuestExit: Sendable, Equatable {
    /// The exit code, or 128 + the signal.
    public var status: UInt32
    /// Nanoseconds since the Unix epoch.
    public var exitedAtNs: UInt64
    /// The OOM killer ended a process of the container since the last exit reported.
    public var oomKilled: Bool

    public init(status: UInt32, exitedAtNs: UInt64, oomKilled: Bool = false) {
        self.status = status
        self.exitedAtNs = exitedAtNs
        self.oomKilled = oomKilled
    }
}

/// What the container and process controllers need of the guest agent: containers through
/// crun, their processes, their cgroups, and the process stdio that joins containerd's fifos
/// to the VM. Every argument is data (ids, guest paths, numbers); nothing is shell text.
public protocol ContainerGuest: Sendable {
    /// Opens containerd's stdio paths (fifos, or `file://` logs; empty: not connected) and
    /// pumps them over the VM's stdio channel; with `deferStdin`, stdin only from
    /// `FifoIO.startStdin` on (see `FifoIO.start`).
    func openStdio(stdin: String, stdout: String, stderr: String, terminal: Bool, deferStdin: Bool) throws(SkiffError) -> FifoIO
    /// The same for a command shimdiag runs in the VM: its stdin ends when the caller closes it.
    func openDiagStdio(stdin: String, stdout: String, stderr: String, terminal: Bool) throws(SkiffError) -> FifoIO
    /// `crun create` of the bundle's guest spec; the init's pid.
    func createContainer(id: String, processID: String, bundle: String, config: String, io: FifoIO, terminal: Bool) async throws -> UInt32
    func startContainer(id: String) async throws
    /// `crun exec --detach` of the process spec at `processSpec` (a guest path); its pid.
    func execProcess(containerID: String, processID: String, processSpec: String, io: FifoIO, terminal: Bool) async throws -> UInt32
    /// Returns once the process has exited and its output has been drained.
    func waitProcess(_ processID: String) async throws -> GuestExit
    /// Forgets an exited process.
    func deleteProcess(_ processID: String) async throws
    func signalProcess(_ processID: String, signal: UInt32) async throws
    /// Every process of the container's cgroup.
    func signalContainer(_ id: String, signal: UInt32) async throws
    func resizeProcess(_ processID: String, width: UInt32, height: UInt32) async throws
    func pauseContainer(_ id: String) async throws
    func resumeContainer(_ id: String) async throws
    func containerStats(_ id: String) async throws -> Skiff_Agent_V1_ContainerStatsResponse
    func updateContainer(_ request: Skiff_Agent_V1_UpdateContainerRequest) async throws
    /// The container's processes, the init first.
    func containerPids(_ id: String) async throws -> [UInt32]
    /// `crun delete --force`; idempotent.
    func deleteContainer(_ id: String) async throws
    /// A container's root: an overlay of `lowers` with its upper and work in `scratch`.
    func mountOverlay(lowers: [String], scratch: String, target: String) async throws
    /// Unmounts a guest path (lazily) and removes it.
    func unmount(path: String) async throws
}

/// Everything the pod asks of its guest.
public typealias PodGuest = ContainerGuest & DiagGuest

/// What shimdiag needs of the guest beyond containers: a process in the VM itself, a mount.
public protocol DiagGuest: Sendable {
    /// Starts `args` in the VM itself; with `terminal`, on a pseudo-terminal of `width` x
    /// `height` (0: the default) that is its controlling terminal.
    func runInVM(processID: String, args: [String], workdir: String, io: FifoIO, terminal: Bool, width: UInt32, height: UInt32) async throws
    func mount(source: String, target: String, readOnly: Bool) async throws
}
