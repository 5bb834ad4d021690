import FoundationEssentials
import Glibc

/// How a VM came to run.
public enum StartPath: Sendable, Equatable, CustomStringConvertible {
    /// A plain boot (no template directory, or another VM was making the template).
    case booted
    /// A copy of the template in `template`.
    case copied(template: String)
    /// This VM made the template in `template` (booting it), then started as its copy.
    case madeTemplate(template: String)
    /// A plain boot after the template path failed, for `reason`.
    case bootedAfterTemplateFailure(reason: String)

    /// Whether the VM runs as a copy of a template.
    public var isCopy: Bool {
        switch self {
        case .copied, .madeTemplate: return true
        case .booted, .bootedAfterTemplateFailure: return false
        }
    }

    public var description: String {
        switch self {
        case .booted: return "booted"
        case let .copied(template): return "a copy of template \(template)"
        case let .madeTemplate(template): return "made template \(template), then a copy of it"
        case let .bootedAfterTemplateFailure(reason): return "booted (the template failed: \(reason))"
        }
    }
}

extension QEMUVirtualMachine {
    /// The template path of `start`: a copy of the shape's template, making it first when
    /// this VM gets the lock. `.booted`: the caller boots (another VM holds the lock, or the
    /// directory cannot be written); `.bootedAfterTemplateFailure`: the caller boots, and
    /// this is why (a template a copy could not start from is removed first).
    func startFromTemplate(timeout: Duration) async -> StartPath {
        guard let directory = document.templateDirectory else { return .booted }
        let store = VMTemplateStore(directory: directory)
        let identity = VMTemplateStore.identity(of: document, binary: binary)
        if let template = store.template(for: identity) {
            do throws(VMManagerError) {
                try await startCopy(of: template, timeout: timeout)
                return .copied(template: template.directory)
            } catch {
                VMTemplateStore.remove(template.directory)
                return await bootAfter(error)
            }
        }
        guard let lock = store.lockForBuilding(identity) else { return .booted }
        defer { withExtendedLifetime(lock) {} }
        let build = store.buildDirectory(forVM: document.id)
        do throws(VMManagerError) {
            try await makeTemplate(in: build, timeout: timeout)
            let template = try store.publish(build: build, identity: identity)
            try await startCopy(of: template, timeout: timeout)
            return .madeTemplate(template: template.directory)
        } catch {
            VMTemplateStore.remove(build)
            return await bootAfter(error)
        }
    }

    private func bootAfter(_ error: VMManagerError) async -> StartPath {
        await killLaunched()
        migrationStatus = nil
        return .bootedAfterTemplateFailure(reason: "\(error)")
    }

    /// The files a template build of VM `id` makes in `store`'s build directory, for the
    /// caller's handles file (so a cleanup after a crash removes a half-made template).
    public static func templateBuildFiles(of document: VMDocument) -> (directory: String, files: [String])? {
        guard let directory = document.templateDirectory else { return nil }
        let build = VMTemplateStore(directory: directory).buildDirectory(forVM: document.id)
        let d = document.relocated(to: build, id: document.id)
        var files = [build + "/memory", build + "/state", build + "/identity", d.consoleLog, d.qmpSocket, d.qemuLog]
        files += d.qmpFDSocket.map { [$0] } ?? []
        if case let .virtioSerial(control, stdio) = d.agentChannel { files += [control.socketPath, stdio.socketPath] }
        return (build, files)
    }

    /// Boots the template's guest in `build` (guest RAM in `build/memory`, mapped shared), waits
    /// until its agent has opened both ports, and saves its device state to `build/state`.
    /// QEMU has ended when this returns. The template's QEMU has this VM's name and pid file,
    /// so a cleanup after a crash finds it.
    private func makeTemplate(in build: String, timeout: Duration) async throws(VMManagerError) {
        VMTemplateStore.remove(build)
        guard mkdir(build, 0o700) == 0 else { throw .startFailed("template: cannot make \(build): \(String(cString: strerror(errno)))") }
        var template = document.relocated(to: build, id: document.id)
        template.pidFile = document.pidFile
        template.kernelArguments.append(VMTemplateStore.templateKernelArgument)
        if let share = template.sharedDirectory, mkdir(share.hostPath, 0o700) != 0 {
            throw .startFailed("template: cannot make \(share.hostPath)")
        }
        try await launch(template, .template(memoryFile: build + "/memory"), timeout: timeout)
        try await resumeOrKill()
        // The guest's boot is the long part: the caller's boot timeout, not QMP's.
        try await waitForAgentPorts(timeout: .seconds(120))
        guard process?.exitStatus == nil else { throw .startFailed("template: QEMU \(exitDescription) during the template's boot") }
        try await execute("stop")
        try await migrate(command: "migrate", file: build + "/state", flags: O_WRONLY | O_CREAT | O_TRUNC, via: template)
        _ = try? await execute("quit")
        if let child = process, await child.wait(timeout: .seconds(10)) == nil { child.signal(SIGKILL); _ = await child.wait() }
        await close()
        process = nil
        migrationStatus = nil
        for socket in [template.qmpSocket] + (template.qmpFDSocket.map { [$0] } ?? []) { unlink(socket) }
        if case let .virtioSerial(control, stdio) = template.agentChannel { unlink(control.socketPath); unlink(stdio.socketPath) }
    }

    /// Starts this VM as a copy of `template`: QEMU waits for its state (`-incoming defer`),
    /// reads it from the template's state file, and the guest runs on from where the
    /// template's stopped.
    private func startCopy(of template: VMTemplateStore.Template, timeout: Duration) async throws(VMManagerError) {
        try await launch(document, .copy(memoryFile: template.memoryFile), timeout: timeout)
        try await migrate(command: "migrate-incoming", file: template.stateFile, flags: O_RDONLY, via: document)
        try await resumeOrKill()
        // The guest had both ports open when the template was saved.
        openPorts.formUnion([QEMUCommandLine.agentPortID, QEMUCommandLine.stdioPortID])
    }

    /// Runs a migration (`migrate` out to, or `migrate-incoming` in from, `file`) with
    /// x-ignore-shared, the file's descriptor passed over the VM's descriptor monitor, and
    /// waits for QEMU's MIGRATION event to say it completed.
    private func migrate(command: String, file: String, flags: Int32, via d: VMDocument) async throws(VMManagerError) {
        guard let fdSocket = d.qmpFDSocket else { throw .invalidConfiguration("template: no descriptor monitor") }
        migrationStatus = nil
        try await execute("migrate-set-capabilities", ["capabilities": .array([
            .object(["capability": .string("x-ignore-shared"), "state": .bool(true)]),
            .object(["capability": .string("events"), "state": .bool(true)]),
        ])])
        let fd = open(file, flags | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .startFailed("template: cannot open \(file): \(String(cString: strerror(errno)))") }
        defer { Glibc.close(fd) }
        try await QMPDescriptorChannel.pass(fd, as: "template", socket: fdSocket, then: command, ["uri": .string("fd:template")])
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            switch migrationStatus {
            case "completed": return
            case "failed", "cancelled": throw .startFailed("template: \(command) \(migrationStatus ?? ""): \(logTail(d.qemuLog))")
            default: break
            }
            if process?.exitStatus != nil { throw .startFailed("template: QEMU \(exitDescription) during \(command): \(logTail(d.qemuLog))") }
            if ContinuousClock.now >= deadline { throw .timedOut("template: \(command) did not complete within 60 s") }
            await waitForMigrationEvent(upTo: .milliseconds(100))
        }
    }

    /// Returns at the next MIGRATION event, or after `limit`.
    private func waitForMigrationEvent(upTo limit: Duration) async {
        let timer = Task { [weak self] in
            try? await Task.sleep(for: limit)
            await self?.wakeMigrationWaiters()
        }
        await withCheckedContinuation { migrationWaiters.append($0) }
        timer.cancel()
    }

    private func wakeMigrationWaiters() {
        let waiters = migrationWaiters
        migrationWaiters.removeAll()
        waiters.forEach { $0.resume() }
    }

    private var exitDescription: String { process?.exitStatus.map { "\($0)" } ?? "running" }
}
