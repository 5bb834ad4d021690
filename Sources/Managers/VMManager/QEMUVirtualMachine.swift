import SkiffSupport
import FoundationEssentials
import Glibc

/// One utility VM's QEMU process and its QMP connection: the host half of a VM.
///
/// `start` launches QEMU with its vCPUs stopped, connects QMP, then lets the guest run; `wait`
/// returns QEMU's exit; `terminate` asks QEMU to quit and kills it if it does not; `close` drops
/// the QMP connection. Everything the VM controller needs of QEMU beyond that (stats, memory,
/// hot-plug) is a plain QMP operation here, in `QEMUVirtualMachine+Devices.swift`.
public actor QEMUVirtualMachine {
    public let document: VMDocument
    let binary: String
    var process: ChildProcess?
    var qmp: QMPClient?
    private var eventTask: Task<Void, Never>?
    private var deviceDeletedWaiters: [String: [(token: UUID, continuation: CheckedContinuation<Bool, Never>)]] = [:]
    private var deletedDevices: Set<String> = []
    /// Serial ports the guest has open (from VSERPORT_CHANGE), and who waits for them.
    var openPorts: Set<String> = []
    /// The status of the last migration (QEMU's MIGRATION events), and who waits for it.
    var migrationStatus: String?
    var migrationWaiters: [CheckedContinuation<Void, Never>] = []
    /// How the last `start` went: booted, or started as a copy of a template.
    public internal(set) var startPath: StartPath = .booted
    /// Which hot-plug root port holds which device id (nil: free).
    var hotplugSlots: [String?]
    private var portWaiters: [CheckedContinuation<Void, Never>] = []
    /// The descriptor set each block node was opened from (`addBlockNode`), and the next set's id.
    var nodeFDSets: [String: Int] = [:]
    var nextFDSet = 1
    /// Whether the share root is bound over itself as a shared mount (`propagateShares`).
    private var sharesPropagated = false
    /// Wall-clock time QEMU was started, for the controller's StartTime.
    public private(set) var startedAt: Date?

    public init(document: VMDocument, binary: String = "/usr/bin/" + QEMUCommandLine.binary) {
        self.document = document
        self.binary = binary
        hotplugSlots = Array(repeating: nil, count: document.pciHotplugSlots)
    }

    /// QEMU's pid once started.
    public var pid: pid_t? { process?.pid }

    /// Starts QEMU and lets the guest run. With a template directory in the document, the VM
    /// starts as a copy of its shape's template, making the template first when there is none
    /// and no other VM is making it; any failure on that path ends in a plain boot, and
    /// `startPath` says which way it went. On failure no QEMU process is left.
    public func start(timeout: Duration = .seconds(10)) async throws(VMManagerError) {
        guard process == nil else { throw .invalidConfiguration("VM \(document.id) was already started") }
        var path = StartPath.booted
        if document.templateDirectory != nil, document.qmpFDSocket != nil {
            path = await startFromTemplate(timeout: timeout)
            if path.isCopy {
                startPath = path
                return
            }
        }
        try await launch(document, .boot, timeout: timeout)
        try await resumeOrKill()
        startPath = path
    }

    /// Spawns QEMU for `document` as `launch` says and connects QMP; the vCPUs stay stopped.
    func launch(_ document: VMDocument, _ launch: QEMUCommandLine.Launch, timeout: Duration) async throws(VMManagerError) {
        for path in [document.qmpSocket, document.pidFile] { unlink(path) }
        if mkdir(document.confinementRoot, 0o700) != 0, errno != EEXIST {
            throw .startFailed("cannot make \(document.confinementRoot): \(String(cString: strerror(errno)))")
        }
        if !isTemplate(launch) { try propagateShares(of: document) }
        let child = try ChildProcess.spawn(binary, arguments: QEMUCommandLine.arguments(for: document, launch: launch),
                                           outputLog: document.qemuLog, filter: QEMUSyscalls.filter.get(),
                                           confinement: QEMUConfinement(for: document, launch: launch, binary: binary))
        process = child
        startedAt = Date()
        do {
            let client = try await connectQMP(child: child, document: document, timeout: timeout)
            qmp = client
            Self.restrictModes(of: document)
            eventTask = Task { [weak self] in
                for await event in client.events { await self?.handle(event) }
            }
        } catch {
            await killLaunched()
            throw error
        }
    }

    /// Makes what QEMU created for `document` (its monitors', the agent's and its console's
    /// sockets and files, which it makes with the shim's umask) readable and writable by
    /// their owner only, 0600, before anything connects through them. Once QMP answers, QEMU
    /// has made them all (character devices come before monitors). A path that is not there
    /// (an optional monitor) is skipped.
    static func restrictModes(of document: VMDocument) {
        var paths = [document.qmpSocket, document.consoleLog, document.qemuLog] + (document.qmpFDSocket.map { [$0] } ?? [])
        if case let .virtioSerial(control, stdio) = document.agentChannel { paths += [control.socketPath, stdio.socketPath] }
        for path in paths { _ = chmod(path, 0o600) }
    }

    private func isTemplate(_ launch: QEMUCommandLine.Launch) -> Bool {
        if case .template = launch { return true }
        return false
    }

    /// The host mounts `launch` makes for `document` (its share root, bound over itself),
    /// which its caller records (durable intent) before the start and unmounts after QEMU.
    public static func hostMounts(of document: VMDocument) -> [String] {
        document.sharedDirectory.map { [$0.hostPath] } ?? []
    }

    /// Binds the share root over itself and makes it a shared mount, once: QEMU's namespace
    /// holds a slave copy of it, so the binds the Plan9 controller makes in it after QEMU
    /// started reach QEMU too (mount_namespaces(7), shared subtrees). A template's share
    /// never gets binds and needs none.
    private func propagateShares(of document: VMDocument) throws(VMManagerError) {
        guard !sharesPropagated, let share = document.sharedDirectory else { return }
        guard mount(share.hostPath, share.hostPath, nil, UInt(MS_BIND), nil) == 0,
              mount(nil, share.hostPath, nil, UInt(MS_SHARED), nil) == 0 else {
            throw .startFailed("cannot make \(share.hostPath) a shared mount: \(String(cString: strerror(errno)))")
        }
        sharesPropagated = true
    }

    /// Lets the launched VM run; kills it when QEMU refuses.
    func resumeOrKill() async throws(VMManagerError) {
        do {
            try await execute("cont")
        } catch {
            await killLaunched()
            throw error
        }
    }

    /// Kills what `launch` started and forgets it.
    func killLaunched() async {
        guard let child = process else { return }
        child.signal(SIGKILL)
        _ = await child.wait()
        await close()
        process = nil
    }

    private func connectQMP(child: ChildProcess, document: VMDocument, timeout: Duration) async throws(VMManagerError) -> QMPClient {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let status = child.exitStatus {
                throw .startFailed("QEMU \(status) before QMP was ready: \(logTail(document.qemuLog))")
            }
            if access(document.qmpSocket, F_OK) == 0, let client = try? await QMPClient.connect(unixSocket: document.qmpSocket) {
                return client
            }
            if ContinuousClock.now >= deadline {
                throw .timedOut("QEMU's QMP socket did not answer within \(timeout): \(logTail(document.qemuLog))")
            }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Waits for QEMU to exit, for whatever reason.
    public func wait() async throws(VMManagerError) -> ExitStatus {
        guard let process else { throw .notRunning("VM \(document.id) was never started") }
        return await process.wait()
    }

    /// QEMU's exit status, once it has exited.
    public var exitStatus: ExitStatus? { process?.exitStatus }

    /// Stops the VM: QMP `quit`, then SIGKILL if QEMU is still there after `grace`.
    /// Returns QEMU's exit status. Idempotent.
    @discardableResult
    public func terminate(grace: Duration = .seconds(3)) async throws(VMManagerError) -> ExitStatus {
        guard let process else { throw .notRunning("VM \(document.id) was never started") }
        if let status = process.exitStatus { return status }
        if let qmp { _ = try? await qmp.execute("quit") }
        if let exited = await process.wait(timeout: grace) { return exited }
        process.signal(SIGKILL)
        return await process.wait()
    }

    /// Closes the QMP connection. The process is not touched.
    public func close() async {
        await qmp?.close()
        qmp = nil
        eventTask?.cancel()
        eventTask = nil
    }

    /// Runs a QMP command; `.notRunning` when QMP is not connected.
    @discardableResult
    public func execute(_ command: String, _ arguments: [String: JSONValue] = [:]) async throws(VMManagerError) -> JSONValue {
        guard let qmp else { throw .notRunning("VM \(document.id) has no QMP connection") }
        return try await qmp.execute(command, arguments)
    }

    /// Waits until QEMU reports that the guest released device `id`.
    func waitForDeviceDeleted(_ id: String, timeout: Duration) async throws(VMManagerError) {
        if deletedDevices.remove(id) != nil { return }
        let token = UUID()
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            await self?.expireDeviceWaiter(id, token)
        }
        let released = await withCheckedContinuation { continuation in
            deviceDeletedWaiters[id, default: []].append((token, continuation))
        }
        timer.cancel()
        if !released { throw .timedOut("the guest did not release device \(id) within \(timeout)") }
    }

    private func expireDeviceWaiter(_ id: String, _ token: UUID) {
        guard var waiters = deviceDeletedWaiters[id], let index = waiters.firstIndex(where: { $0.token == token }) else { return }
        let waiter = waiters.remove(at: index)
        deviceDeletedWaiters[id] = waiters.isEmpty ? nil : waiters
        waiter.continuation.resume(returning: false)
    }

    /// Waits until the guest has opened both agent ports. Data the host sends to a port the
    /// guest has not opened is thrown away by the guest, so nothing may be sent before.
    /// Returns early (without error) if QEMU exits; the caller sees that on its own.
    public func waitForAgentPorts(timeout: Duration) async throws(VMManagerError) {
        let wanted: Set<String> = [QEMUCommandLine.agentPortID, QEMUCommandLine.stdioPortID]
        let deadline = ContinuousClock.now + timeout
        while !wanted.isSubset(of: openPorts) {
            if process?.exitStatus != nil || qmp == nil { return }
            if ContinuousClock.now >= deadline { throw .timedOut("the guest did not open its agent ports within \(timeout)") }
            let timer = Task { [weak self] in
                try? await Task.sleep(for: .milliseconds(100))
                await self?.wakePortWaiters()
            }
            await withCheckedContinuation { portWaiters.append($0) }
            timer.cancel()
        }
    }

    private func wakePortWaiters() {
        let waiters = portWaiters
        portWaiters.removeAll()
        waiters.forEach { $0.resume() }
    }

    private func handle(_ event: QMPEvent) {
        if event.name == "MIGRATION", let status = event.data["status"]?.stringValue {
            migrationStatus = status
            let waiters = migrationWaiters
            migrationWaiters.removeAll()
            waiters.forEach { $0.resume() }
            return
        }
        if event.name == "VSERPORT_CHANGE", let id = event.data["id"]?.stringValue {
            if event.data["open"]?.boolValue == true { openPorts.insert(id) } else { openPorts.remove(id) }
            wakePortWaiters()
            return
        }
        guard event.name == "DEVICE_DELETED", let id = event.data["device"]?.stringValue else { return }
        let waiters = deviceDeletedWaiters.removeValue(forKey: id) ?? []
        if waiters.isEmpty { deletedDevices.insert(id) }
        for waiter in waiters { waiter.continuation.resume(returning: true) }
    }
}

/// The end of a log file (QEMU's own log, the guest console), for error messages that say
/// what the VM printed before it failed.
public func logTail(_ path: String, maxBytes: Int = 3000) -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return "(no log at \(path))" }
    defer { close(fd) }
    let size = lseek(fd, 0, SEEK_END)
    var bytes = [UInt8](repeating: 0, count: maxBytes)
    let n = size < 0 ? 0 : pread(fd, &bytes, maxBytes, max(0, size - off_t(maxBytes)))
    let text = String(decoding: bytes.prefix(max(0, n)), as: UTF8.self).trimmed()
    return text.isEmpty ? "(the log is empty)" : text
}
