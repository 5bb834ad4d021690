import FoundationEssentials
import SkiffSupport
import GuestManager
import Glibc
import Logging
import VMManager

/// The life cycle of a VM's controller.
///
/// | state | trigger | next |
/// |---|---|---|
/// | NotCreated | CreateVM ok | Created |
/// | Created | StartVM ok | Running |
/// | Created | StartVM fails (after the VM process started) | Invalid |
/// | Created | TerminateVM ok / fails | Terminated / Invalid |
/// | Running | VM exits, or TerminateVM ok | Terminated |
/// | Running | TerminateVM fails (release) | Invalid |
/// | Invalid | TerminateVM | Terminated (or stays Invalid if it fails again) |
/// | Terminated | — | terminal |
///
/// StartVM on Running is a no-op; TerminateVM on Terminated or NotCreated is a no-op.
public enum VMState: String, Sendable, Equatable, CustomStringConvertible {
    case notCreated = "NotCreated"
    case created = "Created"
    case running = "Running"
    case terminated = "Terminated"
    case invalid = "Invalid"

    public var description: String { rawValue }
}

/// Owns one utility VM: its state machine, its host half (`VMHost`), its guest connection
/// (`GuestSession`), its handles file and its sub-controllers (Plan9).
///
/// State-changing calls are serialized; queries answer at once. Terminating runs the
/// cleanup chain in order: kill the VM → close the guest connection → release host
/// resources. A failure to kill or to close is logged and the chain goes on; a failure to
/// release leaves the VM Invalid, and a later TerminateVM retries. A background waiter moves
/// Running to Terminated when the VM exits on its own, running the same chain.
public actor VMController {
    public nonisolated let id: String
    public nonisolated let stateDirectory: String
    private let makeHost: @Sendable (VMDocument) -> any VMHost
    private let connector: any GuestAgentConnector
    private let mounter: any HostMounter
    private let logger: Logger

    public private(set) var state: VMState = .notCreated
    public private(set) var document: VMDocument?
    public private(set) var startTime: Date?
    /// How the VM came to run: booted, or a copy of a template (`VMHost.startPath`).
    public private(set) var startPath: StartPath?
    /// How the VM process ended, once it has.
    public private(set) var exitStatus: ExitStatus?
    private var host: (any VMHost)?
    private var guest: (any GuestSession)?
    private var handles: HandlesFile?
    public private(set) var plan9: Plan9Controller?
    /// The pod's network, once the VM runs.
    public private(set) var network: NetworkController?
    /// The pod's disks, once the VM runs.
    public private(set) var scsi: SCSIController?
    /// PCI devices assigned to the VM, once it runs.
    public private(set) var vpci: VPCIController?
    private var exitWatcher: Task<Void, Never>?
    private var terminatedWaiters: [CheckedContinuation<Void, Never>] = []
    private let transitions = AsyncMutex()

    public init(id: String, stateDirectory: String,
                makeHost: @escaping @Sendable (VMDocument) -> any VMHost = { QEMUVirtualMachine(document: $0) },
                connector: any GuestAgentConnector = AgentSocketConnector(),
                mounter: any HostMounter = LinuxHostMounter(),
                logger: Logger = Logger(label: "skiff.vm"))
    {
        self.id = id
        self.stateDirectory = stateDirectory
        self.makeHost = makeHost
        self.connector = connector
        self.mounter = mounter
        var logger = logger
        logger[metadataKey: "vm"] = .string(id)
        self.logger = logger
    }

    /// The runtime's id for the VM (its QEMU `-name`).
    public nonisolated var runtimeID: String { "skiff-\(id)" }

    public nonisolated var handlesPath: String { Self.handlesPath(stateDirectory: stateDirectory) }

    /// The handles file of the VM whose state lives in `stateDirectory`: the one place its
    /// name is known.
    public static func handlesPath(stateDirectory: String) -> String { stateDirectory + "/handles.json" }

    /// Tears down what the handles file of a VM records (the QEMU process, sockets, host
    /// mounts, files, the state directory), for a VM whose controller is gone (`shim delete`
    /// after a SIGKILL). Returns the failures; none means nothing is left.
    public static func cleanUp(stateDirectory: String) async -> [String] {
        await HostCleanup.run(handlesFile: handlesPath(stateDirectory: stateDirectory))
    }

    // MARK: Create and start

    /// Records the VM: state directory, handles file, share root. No process yet.
    public func createVM(_ document: VMDocument) async throws(VMControllerError) {
        try await serialized { () throws(VMControllerError) in
            guard state == .notCreated else { throw .wrongState(operation: "CreateVM", state: state) }
            do {
                try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
                var initial = VMHandles(vmID: id, processName: runtimeID, pidFile: document.pidFile)
                initial.directories = [stateDirectory]
                let handles = try HandlesFile(path: handlesPath, initial: initial)
                self.handles = handles
                if let share = document.sharedDirectory {
                    try handles.update { $0.directories.append(share.hostPath) }
                    try FileManager.default.createDirectory(atPath: share.hostPath, withIntermediateDirectories: true)
                    plan9 = Plan9Controller(shareRoot: share.hostPath, tag: share.tag, mounter: mounter, handles: handles)
                }
            } catch {
                _ = await HostCleanup.run(handlesFile: handlesPath)
                handles = nil
                throw error as? VMControllerError ?? .operationFailed("creating the VM's state: \(error)")
            }
            self.document = document
            state = .created
        }
    }

    /// Boots the VM and waits for its agent. A no-op when already Running.
    public func startVM(bootTimeout: Duration = .seconds(60)) async throws(VMControllerError) {
        try await serialized { () throws(VMControllerError) in
            if state == .running { return }
            guard state == .created, let document, let handles else { throw .wrongState(operation: "StartVM", state: state) }
            do {
                try handles.update {
                    $0.files += [document.qmpSocket, document.pidFile, document.consoleLog, document.qemuLog] + (document.qmpFDSocket.map { [$0] } ?? [])
                    $0.directories += [document.confinementRoot]
                    $0.hostMounts += QEMUVirtualMachine.hostMounts(of: document)
                    if case let .virtioSerial(control, stdio) = document.agentChannel {
                        $0.files += [control.socketPath, stdio.socketPath]
                    }
                    // A template this VM may make: half-made, it goes with the VM.
                    if let build = QEMUVirtualMachine.templateBuildFiles(of: document) {
                        $0.files += build.files
                        $0.directories += [build.directory, build.directory + "/share", build.directory + "/qemu-root"]
                    }
                }
            } catch {
                throw .startFailed("recording handles: \(error)", state: state)
            }
            FaultStop.beforeQEMU.reach()
            let host = makeHost(document)
            let begun = ContinuousClock.now
            do {
                try await host.start(timeout: .seconds(30))
            } catch {
                // No VM process: nothing to undo beyond the host's own cleanup.
                throw .startFailed("\(error)", state: state)
            }
            self.host = host
            network = NetworkController(host: LinuxNetworkHost(vm: host), handles: handles, logger: logger)
            scsi = SCSIController(controllers: document.scsiControllers, host: VMSCSIHost(vm: host), handles: handles)
            vpci = VPCIController(host: VMVPCIHost(vm: host), handles: handles)
            startTime = Date()
            let qemuUp = ContinuousClock.now - begun
            watchExit(of: host)
            do {
                let guest = try await connector.connect(
                    document: document, timeout: bootTimeout,
                    vmExit: { [weak self] in await self?.exitDescription() })
                self.guest = guest
                try await guest.syncWithHost()
                await plan9?.attach(guest: guest)
                await network?.attach(guest: guest)
                await scsi?.attach(guest: guest)
                await vpci?.attach(guest: guest)
            } catch {
                state = .invalid
                logger.error("StartVM failed after the VM process started: \(error)")
                throw .startFailed("\(error)", state: .invalid, cause: error as? GuestManagerError)
            }
            state = .running
            let path = await host.startPath
            startPath = path
            logger.info("VM running (\(path)): QEMU up after \(qemuUp), the agent answered after \(ContinuousClock.now - begun)")
        }
    }

    /// Starts the host's KSM for a VM whose memory may be merged; says what it found.
    func startHostKSM() {
        switch HostKSM.ensureRunning() {
        case .alreadyRunning: break
        case .started: logger.info("started the host's KSM (/sys/kernel/mm/ksm/run = 1) for a VM with memory merging")
        case let .unavailable(reason): logger.warning("memory merging asked for, but the host's KSM cannot run: \(reason)")
        }
    }

    private func exitDescription() -> String? {
        exitStatus.map { "exited (\($0))" }
    }

    private func watchExit(of host: any VMHost) {
        exitWatcher = Task { [weak self] in
            guard let status = try? await host.wait() else { return }
            await self?.vmExited(status)
        }
    }

    /// The VM process ended. If nobody is terminating it, tidy up and move to Terminated.
    private func vmExited(_ status: ExitStatus) async {
        exitStatus = status
        logger.info("VM process \(status)")
        try? await serialized { () throws(VMControllerError) in
            guard state == .running else { return }
            await closeGuest()
            if let failure = await releaseHostResources() {
                logger.error("after the VM exited: \(failure)")
                state = .invalid
            } else {
                state = .terminated
            }
        }
        resumeTerminatedWaitersIfDone()
    }

    // MARK: Terminate

    /// Stops the VM and releases everything. No-op on NotCreated and Terminated.
    public func terminateVM() async throws(VMControllerError) {
        try await serialized { () throws(VMControllerError) in
            switch state {
            case .notCreated, .terminated: return
            case .created, .running, .invalid: break
            }
            // 1. Kill the VM; a failure is logged and the chain goes on.
            if let host {
                do {
                    let status = try await host.terminate()
                    if exitStatus == nil { exitStatus = status }
                } catch {
                    logger.error("TerminateVM: killing the VM failed: \(error)")
                }
                await host.close()
            }
            // 2. Close the guest connection; likewise.
            await closeGuest()
            // 3. Release host resources; a failure leaves the VM Invalid.
            if let failure = await releaseHostResources() {
                state = .invalid
                throw .cleanupFailed(failure)
            }
            state = .terminated
        }
        resumeTerminatedWaitersIfDone()
    }

    private func closeGuest() async {
        if let guest {
            do {
                try await guest.close()
            } catch {
                logger.error("closing the guest connection failed: \(error)")
            }
            self.guest = nil
        }
    }

    /// Unbinds shares, removes files and the state directory. Nil on success.
    private func releaseHostResources() async -> String? {
        var failures: [String] = []
        if let plan9 { failures += await plan9.releaseAll() }
        await scsi?.releaseAll()
        await vpci?.releaseAll()
        if let network {
            await network.attach(guest: nil)
            failures += await network.tearDown(vmGone: true)
        }
        if let handles {
            failures += await HostCleanup.run(handles.handles, handlesFile: failures.isEmpty ? handlesPath : nil,
                                              killTimeout: .seconds(5))
        }
        return failures.isEmpty ? nil : failures.joined(separator: "; ")
    }

    // MARK: Queries and operations

    /// Returns once the VM is Terminated; its exit status if it ran.
    public func wait() async -> ExitStatus? {
        if state != .terminated {
            await withCheckedContinuation { terminatedWaiters.append($0) }
        }
        return exitStatus
    }

    private func resumeTerminatedWaitersIfDone() {
        guard state == .terminated else { return }
        let waiters = terminatedWaiters
        terminatedWaiters.removeAll()
        waiters.forEach { $0.resume() }
    }

    public func stats() async throws(VMControllerError) -> VMStats {
        guard state == .running, let host else { throw .wrongState(operation: "Stats", state: state) }
        do {
            return VMStats(host: try await host.hostStats())
        } catch {
            throw .operationFailed("stats: \(error)")
        }
    }

    /// Runs a command in the VM, outside any container (shimdiag exec).
    public func execIntoHost(_ args: [String], stdin: [UInt8] = []) async throws(VMControllerError) -> GuestCommandResult {
        guard state == .running, let guest else { throw .wrongState(operation: "ExecIntoHost", state: state) }
        guard !args.isEmpty else { throw .invalidArgument("a command is required") }
        do {
            return try await guest.run(args, id: "exec-\(UInt32.random(in: 0...UInt32.max))", stdin: stdin)
        } catch {
            throw .operationFailed("exec \(args[0]): \(error)")
        }
    }

    public func dumpStacks() async throws(VMControllerError) -> String {
        guard state == .running, let guest else { throw .wrongState(operation: "DumpStacks", state: state) }
        do {
            return try await guest.dumpStacks()
        } catch {
            throw .operationFailed("dump stacks: \(error)")
        }
    }

    /// Resizes the guest's memory through the balloon.
    public func update(memoryBytes: Int) async throws(VMControllerError) {
        guard state == .running, let host else { throw .wrongState(operation: "Update", state: state) }
        do {
            try await host.setMemoryTarget(bytes: memoryBytes)
        } catch let error as VMManagerError {
            if case .invalidConfiguration = error { throw .invalidArgument(error.description) }
            throw .operationFailed("\(error)")
        } catch {
            throw .operationFailed("\(error)")
        }
    }

    /// Grows the VM to `count` vCPUs: QEMU hot-adds them and the guest agent brings them
    /// online. The VM must have been built with room (`VMBuilder.maxVCPUs`); vCPUs only grow.
    public func update(vcpus count: Int) async throws(VMControllerError) {
        try await serialized { () throws(VMControllerError) in
            guard state == .running, let host, let guest else { throw .wrongState(operation: "Update", state: state) }
            do {
                try await host.setVCPUs(count)
            } catch let error as VMManagerError {
                if case .invalidConfiguration = error { throw .invalidArgument(error.description) }
                throw .operationFailed("\(error)")
            } catch {
                throw .operationFailed("\(error)")
            }
            let online: Int
            do {
                online = try await guest.onlineCPUs(wanted: count, timeout: .seconds(10))
            } catch {
                throw .operationFailed("bringing the new vCPUs online in the guest: \(error)")
            }
            guard online >= count else {
                throw .operationFailed("\(count) vCPUs plugged but only \(online) came online in the guest")
            }
        }
    }

    /// The agent's API and process stdio while Running, for the service layer's containers.
    public var agentChannels: AgentChannels? {
        state == .running ? guest?.channels : nil
    }

    /// The VM process's pid while it runs.
    public func processID() async -> pid_t? {
        await host?.processID
    }

    // MARK: Serialization

    private func serialized<T>(_ body: () async throws(VMControllerError) -> T) async throws(VMControllerError) -> T {
        try await transitions.withLock(body)
    }
}
