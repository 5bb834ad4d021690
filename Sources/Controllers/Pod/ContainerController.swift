import AgentAPI
import ContainerdAPI
import FoundationEssentials
import Glibc
import Logging
import SkiffSupport
import SwiftProtobuf
import VMController

/// One container of the pod: what it holds on the host and in the guest, its init process
/// and the processes Exec adds to it.
///
/// ## Create, and what it holds
/// `create` first checks what the spec asks for (bind sources, block devices), then takes, in
/// this order, each a release to undo later: the rootfs (mounted on the host into the bundle;
/// or, for a root on block devices or a root that is an image, disks in the VM, `BlockRootfs`),
/// the bundle shared into the VM (Plan9), the spec's block devices and device mounts attached
/// over SCSI (`BlockVolumes`), each bind mount's host source shared into the VM (read-only
/// where the mount is), the guest spec file beside config.json, and the container in the guest
/// (`crun create`, whose init then waits for Start).
/// A create that fails at step k undoes steps k-1…1 and throws the step's error.
///
/// ## Delete, resumable
/// Delete releases in reverse order: the container in the guest (`crun delete --force`),
/// the exec spec files, the shares, the guest spec, the rootfs mount. A release that fails
/// stays at the top of the list and Delete throws; the next Delete resumes there. Releases
/// that need the guest are done when the VM is already gone (its end took them along).
///
/// ## State
/// The container's state is its init's (`ProcessController`): Created → Running ⇄ Paused →
/// Stopped → Deleted. Signals, pause, stats, update and pids go to the guest agent, which
/// works on the container's cgroup; nothing here composes shell text.
public actor ContainerController {
    /// What `create` took, undone in reverse by `delete`.
    enum Release: Equatable {
        case rootfs(String)
        case share(Plan9Controller.ShareID)
        case disk(SCSIController.DiskID)
        case pciDevice(VPCIController.DeviceID)
        case guestMount(String)
        case file(String)
        case guestContainer
    }

    public nonisolated let id: String
    public nonisolated let bundle: TaskBundle
    /// The bundle as the guest sees it (through its share).
    nonisolated let guestBundle: String
    let guest: any PodGuest
    let shares: any ContainerShares
    let disks: (any ContainerDisks)?
    let devices: (any ContainerDevices)?
    let rootfs: any RootfsMounter
    let events: any TaskEvents
    let logger: Logger
    /// The init process, which the agent knows by the container's id.
    public nonisolated let initProcess: ProcessController
    var execs: [String: ProcessController] = [:]
    var releases: [Release]
    /// It holds a disk of the user's (a volume, a root that is an image), whose writes the
    /// guest must flush before the disk goes.
    var holdsVolumes = false

    init(id: String, bundle: TaskBundle, guestBundle: String, guest: any PodGuest, shares: any ContainerShares,
         disks: (any ContainerDisks)?, devices: (any ContainerDevices)?, rootfs: any RootfsMounter, events: any TaskEvents, logger: Logger,
         initProcess: ProcessController, releases: [Release]) {
        self.id = id
        self.bundle = bundle
        self.guestBundle = guestBundle
        self.guest = guest
        self.shares = shares
        self.disks = disks
        self.devices = devices
        self.rootfs = rootfs
        self.events = events
        self.logger = logger
        self.initProcess = initProcess
        self.releases = releases
    }

    /// What Create needs beyond containerd's request.
    struct Placement {
        var guest: any PodGuest
        var shares: any ContainerShares
        var rootfs: any RootfsMounter
        var events: any TaskEvents
        var logger: Logger
        /// Guest pids of the pod's live containers, whose namespaces a new one may join.
        var podPids: Set<UInt32>
        /// The VM's disks (SCSI), for the spec's block devices and a root on block devices.
        var disks: (any ContainerDisks)?
        /// The VM's PCI devices (vPCI), for the spec's VFIO devices.
        var devices: (any ContainerDevices)?
        /// containerd's overlay snapshots become disks (else they are shared over Plan9).
        var rootOnBlock: Bool
        var layers: LayerCache
        var scratchMiB: Int
        /// The pod's VFIO mode (`SandboxConfig.vfioMode`), for containers that do not name one.
        var vfioMode = "vfio"
        /// Where the host's sysfs is (its block devices, IOMMU groups and PCI functions).
        var sysfs = "/sys"
    }

    /// Creates the container (see the type's doc for the steps and their undoing).
    static func create(_ request: Containerd_Task_V2_CreateTaskRequest, spec: OCISpec,
                       in place: Placement) async throws(SkiffError) -> ContainerController {
        let bundle = TaskBundle(path: request.bundle)
        let terminal = spec.process?.terminal ?? false
        var taken: [Release] = []
        do throws(SkiffError) {
            // What the spec asks for is checked before anything is made.
            let volumes = try BlockVolumes.plan(spec, sysfs: place.sysfs)
            let vfio = try VFIODevices.plan(spec, defaultMode: place.vfioMode, sysfs: place.sysfs)
            try VFIODevices.checkCharacterDevices(spec)
            let binds = try GuestSpec.bindMounts(of: spec)
            let deviceRoot = BlockRootfs.device(of: request.rootfs)
            let overlay = place.rootOnBlock && place.disks != nil ? BlockRootfs.overlay(of: request.rootfs) : nil
            if overlay == nil, deviceRoot == nil, !request.rootfs.isEmpty {
                try place.rootfs.mount(request.rootfs, at: bundle.rootfs)
                taken.append(.rootfs(bundle.rootfs))
            }
            let guestBundle = try await share(bundle.path, readOnly: false, with: place.shares, taken: &taken)
            var guestRoot: String?
            if let overlay, let disks = place.disks {
                guestRoot = try await BlockRootfs.make(overlay, id: request.id, bundle: bundle, scratchMiB: place.scratchMiB,
                                                       disks: disks, layers: place.layers, guest: place.guest, taken: &taken)
            }
            var spec = spec
            if case let .mount(_, source, config, readOnly) = deviceRoot {
                guard let disks = place.disks else { throw .unavailable("the VM has no SCSI controller for a root on a disk") }
                guestRoot = try await BlockVolumes.attach(source, readOnly: readOnly, mount: config, disks: disks, taken: &taken).mountPath
            }
            try await BlockVolumes.attach(volumes, to: &spec, disks: place.disks, taken: &taken)
            try await VFIODevices.assign(vfio, to: place.devices, spec: &spec, taken: &taken)
            if !vfio.entries.isEmpty {
                place.logger.info("guest spec of \(request.id): VFIO devices \(vfio.devices.map(\.identity)) in \(vfio.mode.rawValue) mode: \(spec.linux?.devices?.compactMap(\.path) ?? [])")
            }
            var guestSources: [Int: String] = [:]
            for mount in binds {
                guestSources[mount.index] = try await share(mount.source, readOnly: mount.readOnly, with: place.shares, taken: &taken)
            }
            let (guestSpec, dropped) = GuestSpec.make(spec, mountSources: guestSources, podPids: place.podPids, root: guestRoot ?? "rootfs")
            for note in dropped { place.logger.info("guest spec of \(request.id): \(note)") }
            let specPath = bundle.path + "/" + GuestSpec.fileName
            taken.append(.file(specPath))
            try GuestSpec.write(guestSpec, to: specPath)

            let io = try place.guest.openStdio(stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, terminal: terminal,
                                               deferStdin: true)
            let pid: UInt32
            do throws(SkiffError) {
                taken.append(.guestContainer)
                pid = try await guestCall("create \(request.id) in the VM") {
                    try await place.guest.createContainer(id: request.id, processID: request.id, bundle: guestBundle,
                                                          config: guestBundle + "/" + GuestSpec.fileName, io: io, terminal: terminal)
                }
            } catch {
                io.abandon()
                throw error
            }
            let process = ProcessController(containerID: request.id, kind: .initProcess, agentID: request.id, terminal: terminal,
                                            stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, events: place.events)
            await process.launched(pid: pid, io: io)
            let container = ContainerController(
                id: request.id, bundle: bundle, guestBundle: guestBundle, guest: place.guest, shares: place.shares,
                disks: place.disks, devices: place.devices, rootfs: place.rootfs, events: place.events, logger: place.logger,
                initProcess: process, releases: taken)
            await process.setOnExit { [weak container] in await container?.initExited() }
            await container.setHoldsVolumes(!volumes.isEmpty || deviceRoot != nil)
            return container
        } catch {
            var remaining = taken
            try? await release(&remaining, guest: place.guest, shares: place.shares, disks: place.disks, devices: place.devices, rootfs: place.rootfs,
                               containerID: request.id,
                          logger: place.logger, stopAtFailure: false)
            throw error
        }
    }

    private func setHoldsVolumes(_ holds: Bool) { holdsVolumes = holds }

    /// Whether the container may go with the VM, without releasing what it holds in the guest
    /// first: its init has stopped, and nothing it holds there keeps data the host needs (its
    /// shares are Plan9 without a cache, so its writes are on the host already; a scratch disk
    /// and layer images are the container's alone and thrown away).
    var disposableInTheVM: Bool {
        get async { await initProcess.status == .stopped && !holdsVolumes }
    }

    /// Reserves and maps a host path into the VM, recording the release as soon as it is
    /// reserved; its guest path.
    private static func share(_ hostPath: String, readOnly: Bool, with shares: any ContainerShares,
                              taken: inout [Release]) async throws(SkiffError) -> String {
        let id = try await guestCall("share \(hostPath) into the VM") { try await shares.reserve(hostPath: hostPath, readOnly: readOnly) }
        taken.append(.share(id))
        return try await guestCall("share \(hostPath) into the VM") { try await shares.mapToGuest(id) }
    }

    /// Undoes `releases` from the last. With `stopAtFailure`, stops at the first that fails
    /// (it stays, with those below it, for a retry) and throws; else logs it and goes on.
    /// What lived in the guest counts as released when the VM or its agent is gone.
    static func release(_ releases: inout [Release], guest: any ContainerGuest, shares: any ContainerShares, disks: (any ContainerDisks)?,
                        devices: (any ContainerDevices)?,
                        rootfs: any RootfsMounter, containerID: String, logger: Logger, stopAtFailure: Bool) async throws(SkiffError) {
        while let last = releases.last {
            do {
                try await perform(last, guest: guest, shares: shares, disks: disks, devices: devices, rootfs: rootfs, containerID: containerID)
            } catch {
                if last.livesInTheVM, error.code == .unavailable || error.code == .notFound {
                    logger.info("releasing \(last) of \(containerID): gone with the VM (\(error.message))")
                } else if stopAtFailure {
                    throw error
                } else {
                    logger.error("releasing \(last) of \(containerID): \(error)")
                }
            }
            releases.removeLast()
        }
    }

    private static func perform(_ release: Release, guest: any ContainerGuest, shares: any ContainerShares, disks: (any ContainerDisks)?,
                                devices: (any ContainerDevices)?,
                                rootfs: any RootfsMounter, containerID: String) async throws(SkiffError) {
        switch release {
        case .guestContainer:
            try await guestCall("delete \(containerID) in the VM") { try await guest.deleteContainer(containerID) }
        case let .share(id):
            try await guestCall("unshare from \(containerID)") { try await shares.unmapFromGuest(id) }
        case let .disk(id):
            guard let disks else { return }
            try await guestCall("detach a disk of \(containerID)") { try await disks.unmapFromGuest(id) }
        case let .pciDevice(id):
            guard let devices else { return }
            try await guestCall("remove a PCI device of \(containerID)") { try await devices.removeFromVM(id) }
        case let .guestMount(path):
            try await guestCall("unmount \(path) in the VM") { try await guest.unmount(path: path) }
        case let .file(path):
            if unlink(path) != 0, errno != ENOENT {
                throw .internalError("remove \(path): \(String(cString: strerror(errno)))")
            }
        case let .rootfs(target):
            try rootfs.unmount(target)
        }
    }
}

extension ContainerController.Release {
    /// Held in the VM (so gone when the VM is).
    var livesInTheVM: Bool {
        switch self {
        case .guestContainer, .share, .disk, .pciDevice, .guestMount: return true
        case .file, .rootfs: return false
        }
    }
}
