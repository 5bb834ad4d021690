import ContainerdAPI
import FoundationEssentials
import Glibc
import Logging
import SkiffSupport
import SwiftProtobuf
import VMController

/// The pod one shim serves: its utility VM and its containers. The task and diag services
/// call it; it calls the container controllers, which call their process controllers.
///
/// ## VM lifetime
/// | pod | trigger | next |
/// |---|---|---|
/// | no VM | Create | VM created and booted, then the container created in it |
/// | VM running | Create | the container created in it (a second Create during the boot waits for it) |
/// | VM running | the last container deleted, or the last Create failed with no other in flight | VM terminated |
///
/// State changes that span awaits (booting, terminating) hold one `AsyncMutex`: two Creates
/// arriving while the VM boots both get the one VM, and a Create that fails terminates the
/// VM only when no container uses it and no other Create is under way.
///
/// ## Durable intent
/// Before the VM is made, every bundle names the VM's state directory (`skiff-vm`), so
/// `shim delete` finds and tears the VM down from files alone after a SIGKILL.
///
/// ## Errors
/// Every method throws `SkiffError` (NotFound for an unknown task or exec, FailedPrecondition
/// for a call the state does not allow, InvalidArgument for bad input; a lower layer's failure
/// keeps its code and its cause).
public actor PodController {
    let events: any TaskEvents
    let logger: Logger
    private let stateRoot: String
    /// The containerd and namespace served (`ADDRESS/NAMESPACE`), part of the VM's id.
    private let scope: String
    private let imageDirectory: String?
    private let makeVM: PodVMFactory
    private let rootfs: any RootfsMounter
    private let layers: LayerCache
    private let sysfs: String

    var vm: (any PodVM)?
    var containers: [String: ContainerController] = [:]
    /// Creates under way, by task id: they count as users of the VM.
    private var creating: Set<String> = []
    private let lifecycle = AsyncMutex()

    public init(events: any TaskEvents, logger: Logger, scope: String = "", stateRoot: String = "/run/skiff", imageDirectory: String? = nil,
                rootfs: any RootfsMounter = HostRootfs(), layers: LayerCache = LayerCache(), sysfs: String = "/sys",
                makeVM: @escaping PodVMFactory = { id, state in VMController(id: id, stateDirectory: state) }) {
        self.events = events
        self.logger = logger
        self.stateRoot = stateRoot
        self.scope = scope
        self.imageDirectory = imageDirectory
        self.rootfs = rootfs
        self.layers = layers
        self.sysfs = sysfs
        self.makeVM = makeVM
    }

    /// No task left (and none being created): the shim may exit.
    public var isEmpty: Bool { containers.isEmpty && creating.isEmpty }

    // MARK: Create and delete

    public func create(_ request: Containerd_Task_V2_CreateTaskRequest) async throws(SkiffError) -> UInt32 {
        try ContainerdIdentifier.validate(request.id, what: "task id")
        guard containers[request.id] == nil, !creating.contains(request.id) else { throw .alreadyExists("task \(request.id) already exists") }
        guard request.checkpoint.isEmpty else { throw .unimplemented("checkpoint restore is not supported") }
        let bundle = TaskBundle(path: request.bundle)
        let spec = try GuestSpec.read(bundle.configPath)
        let options = try SandboxConfig.from(annotations: spec.annotations ?? [:], base: SandboxConfig.runtimeConfig(request.options))
        let begun = ContinuousClock.now
        creating.insert(request.id)
        let container: ContainerController
        do {
            let vm = try await ensureVM(group: PodIdentity.group(id: request.id, annotations: spec.annotations ?? [:]),
                                        config: options, bundle: bundle)
            // Every container's bundle names the pod's VM, so cleanup after a killed shim
            // finds it from whichever task containerd cleans up.
            try bundle.write(vm.stateDirectory, to: bundle.vmFile)
            guard let guest = await vm.guest(), let shares = await vm.shares() else { throw SkiffError.unavailable("the VM is not running") }
            let podPids = await livePids()
            if let netns = try GuestSpec.podNetwork(of: spec, podPids: podPids) {
                try await guestCall("joining the pod's network \(netns)") { try await vm.setUpNetwork(netns: netns) }
            }
            container = try await ContainerController.create(request, spec: spec, in: .init(
                guest: guest, shares: shares, rootfs: rootfs, events: events, logger: logger, podPids: podPids,
                disks: await vm.disks(), devices: await vm.devices(), rootOnBlock: options.rootfs == .block, layers: layers, scratchMiB: options.scratchMiB, vfioMode: options.vfioMode, sysfs: sysfs))
        } catch {
            creating.remove(request.id)
            if await terminateVMIfUnused() { unlink(bundle.vmFile) }
            throw SkiffError.wrapping(error)
        }
        containers[request.id] = container
        creating.remove(request.id)
        logger.info("created \(request.id) in \(ContinuousClock.now - begun)")
        let terminal = spec.process?.terminal ?? false
        let pid = await container.initProcess.pid
        await events.publish(topic: "/tasks/create", Containerd_Events_TaskCreate.with {
            $0.containerID = request.id
            $0.bundle = request.bundle
            $0.rootfs = request.rootfs
            $0.io = .with { $0.stdin = request.stdin; $0.stdout = request.stdout; $0.stderr = request.stderr; $0.terminal = terminal }
            $0.pid = pid
        })
        return pid
    }

    /// The pod's VM, booting it first if there is none. Serialized: a second caller during
    /// the boot waits and gets the same VM.
    private func ensureVM(group: String, config: SandboxConfig, bundle: TaskBundle) async throws(SkiffError) -> any PodVM {
        try await lifecycle.withLock { () async throws(SkiffError) -> any PodVM in
            if let vm { return vm }
            let vmID = PodIdentity.vmID(scope: scope, group: group)
            let vm = makeVM(vmID, "\(stateRoot)/\(vmID)")
            // Durable intent first: delete must find the VM even if this process dies next.
            try bundle.write(vm.stateDirectory, to: bundle.vmFile)
            self.vm = vm
            do {
                try await vm.createVM(options: config.vmOptions(imageDirectory: imageDirectory))
                try await vm.startVM(bootTimeout: config.bootTimeout)
            } catch {
                do { try await vm.terminateVM() } catch { logger.error("terminating a VM that failed to start: \(error)") }
                self.vm = nil
                throw SkiffError.wrapping(error, "starting the pod's VM")
            }
            Task { [weak self] in
                await vm.waitTerminated()
                await self?.vmEnded()
            }
            return vm
        }
    }

    /// The VM ended (QEMU killed, a guest panic, or a termination of ours): every process of
    /// every container that has not ended is recorded as ended, 255, since nothing of it is
    /// left; running ones learn it from their agent connection too, and the first record counts.
    /// A created init's Kill and Delete then need nothing of the guest.
    private func vmEnded() async {
        for container in containers.values { await container.vmEnded() }
    }

    /// Terminates the VM when no container uses it and no Create is under way. False when the
    /// termination failed (the VM is Invalid: its handles file and the bundles naming it stay
    /// for `shim delete`).
    @discardableResult
    private func terminateVMIfUnused() async -> Bool {
        await lifecycle.withLock {
            guard containers.isEmpty, creating.isEmpty, let vm else { return true }
            self.vm = nil
            do {
                try await vm.terminateVM()
                return true
            } catch {
                logger.error("terminating the VM: \(error)")
                return false
            }
        }
    }

    /// Delete of the pod's last container, stopped and holding nothing in the guest that must
    /// reach the host (`ContainerController.disposableInTheVM`), ends the VM first: what the
    /// container held in the guest (crun's state, mounts, disks, shares) goes with the VM, not
    /// in a round trip each; Delete then releases what it held on the host.
    private func endVMFirst(deleting container: ContainerController) async {
        guard await container.disposableInTheVM else { return }
        await lifecycle.withLock {
            guard containers.count == 1, containers[container.id] != nil, creating.isEmpty, let vm else { return }
            self.vm = nil
            do { try await vm.terminateVM() } catch { logger.error("terminating the VM: \(error)") }
        }
    }

    public func delete(id: String, execID: String) async throws(SkiffError) -> (pid: UInt32, status: UInt32, at: Date) {
        let container = try container(id)
        if !execID.isEmpty { return try await container.deleteExec(execID: execID) }
        let begun = ContinuousClock.now
        await endVMFirst(deleting: container)
        let exit = try await container.delete()
        containers[id] = nil
        if await terminateVMIfUnused() { unlink(container.bundle.vmFile) }
        logger.info("deleted \(id) in \(ContinuousClock.now - begun)")
        await events.publish(topic: "/tasks/delete", Containerd_Events_TaskDelete.with {
            $0.containerID = id
            $0.pid = exit.pid
            $0.exitStatus = exit.status
            $0.exitedAt = .init(date: exit.at)
        })
        return exit
    }

    // MARK: Calls on one container

    func container(_ id: String) throws(SkiffError) -> ContainerController {
        guard let container = containers[id] else { throw .notFound("task \(id) not found") }
        return container
    }

    public func start(id: String, execID: String) async throws(SkiffError) -> UInt32 {
        let container = try container(id)
        return execID.isEmpty ? try await container.start() : try await container.startExec(execID: execID)
    }

    public func exec(id: String, execID: String, terminal: Bool, stdin: String, stdout: String, stderr: String,
                     spec: Google_Protobuf_Any) async throws(SkiffError) {
        try await container(id).exec(execID: execID, terminal: terminal, stdin: stdin, stdout: stdout, stderr: stderr, spec: spec)
    }

    public func wait(id: String, execID: String) async throws(SkiffError) -> (status: UInt32, at: Date) {
        try await container(id).wait(execID: execID)
    }

    public func kill(id: String, execID: String, signal: UInt32, all: Bool) async throws(SkiffError) {
        try await container(id).kill(execID: execID, signal: signal, all: all)
    }

    public func setPaused(id: String, _ paused: Bool) async throws(SkiffError) {
        try await container(id).setPaused(paused)
    }

    public func metrics(id: String) async throws(SkiffError) -> Io_Containerd_Cgroups_V2_Metrics {
        try await container(id).metrics()
    }

    public func update(id: String, resources: Google_Protobuf_Any) async throws(SkiffError) {
        try await container(id).update(resources: resources)
    }

    public func processes(id: String) async throws(SkiffError) -> [UInt32] {
        try await container(id).processes()
    }

    public func state(id: String, execID: String) async throws(SkiffError) -> Containerd_Task_V2_StateResponse {
        try await container(id).state(execID: execID)
    }

    public func closeIO(id: String, execID: String) async throws(SkiffError) {
        try await container(id).closeIO(execID: execID)
    }

    public func resizePty(id: String, execID: String, width: UInt32, height: UInt32) async throws(SkiffError) {
        try await container(id).resizePty(execID: execID, width: width, height: height)
    }

    /// The init's pid, for Connect.
    public func pid(of id: String) async throws(SkiffError) -> UInt32 {
        await (try container(id)).initProcess.pid
    }

    /// Guest pids of the pod's live containers' inits.
    private func livePids() async -> Set<UInt32> {
        var pids: Set<UInt32> = []
        for container in containers.values where await container.initProcess.isLive {
            pids.insert(await container.initProcess.pid)
        }
        return pids
    }
}
