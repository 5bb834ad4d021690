import AgentAPI
import ContainerdAPI
import Foundation
import Glibc
import GuestManager
import Logging
import ShimProcess
import StdioMux
import SwiftProtobuf
import VMController
import VMManager

/// The pod one shim serves: its VM (created by the first container, terminated after the
/// last) and its containers. Every task call lands here through `TaskService`.
public actor Pod {
    var vm: VMController?
    var containers: [String: Container] = [:]
    let events: EventPublisher
    let logger: Logger
    private let stateRoot: String
    private let imageDirectory: String?

    public init(events: EventPublisher, logger: Logger, stateRoot: String = "/run/skiff", imageDirectory: String? = nil) {
        self.events = events
        self.logger = logger
        self.stateRoot = stateRoot
        self.imageDirectory = imageDirectory
    }

    public var isEmpty: Bool { containers.isEmpty }

    // MARK: Create

    public func create(_ request: Containerd_Task_V2_CreateTaskRequest) async throws(ServiceError) -> UInt32 {
        try Self.validate(id: request.id)
        guard containers[request.id] == nil else { throw .alreadyExists("task \(request.id) already exists") }
        guard request.checkpoint.isEmpty else { throw .unimplemented("checkpoint restore is not supported") }
        let bundle = TaskBundle(path: request.bundle)
        let annotations: [String: String]
        do { annotations = try bundle.annotations() } catch { throw .invalidArgument("\(error)") }
        let spec = try Self.spec(of: bundle)
        let terminal = try Self.terminal(of: spec)
        let begun = ContinuousClock.now

        try mountRootfs(request.rootfs, at: bundle.rootfs)
        var shares: [Plan9Controller.ShareID] = []
        var plan9: Plan9Controller?
        do {
            let vm = try await ensureVM(annotations: annotations, options: request.options, bundle: bundle, id: request.id)
            // Every container's bundle names the pod's VM, so cleanup after a killed shim finds
            // it from whichever task containerd cleans up.
            try bundle.write(vm.stateDirectory, to: bundle.vmFile)
            guard let share9p = await vm.plan9 else { throw ServiceError.internalError("the VM has no share") }
            plan9 = share9p
            let bundleShare = try await share9p.reserve(hostPath: bundle.path, readOnly: false)
            shares.append(bundleShare)
            let guestBundle = try await share9p.mapToGuest(bundleShare)
            // The spec's bind mounts: each host source shared into the VM (read-only where the
            // mount is), and the guest's spec names it by its guest path.
            var guestSources: [Int: String] = [:]
            for mount in try Self.bindMounts(of: spec) {
                let id = try await share9p.reserve(hostPath: mount.source, readOnly: mount.readOnly)
                shares.append(id)
                guestSources[mount.index] = try await share9p.mapToGuest(id)
            }
            try writeGuestConfig(spec, bundle: bundle, mountSources: guestSources)
            containers[request.id] = Container(
                id: request.id, bundle: bundle, shares: shares, guestBundle: guestBundle,
                cgroupPath: Self.cgroupPath(of: spec, id: request.id),
                process: ProcessRecord(agentID: request.id, terminal: terminal,
                                       stdin: request.stdin, stdout: request.stdout, stderr: request.stderr))
        } catch {
            for id in shares.reversed() {
                do { try await plan9?.unmapFromGuest(id) } catch { logger.error("unsharing after a failed create: \(error)") }
            }
            umount2(bundle.rootfs, Int32(MNT_DETACH))
            unlink(bundle.path + "/" + Self.guestConfigName)
            if containers.isEmpty { await terminateVM() }
            throw ServiceError.from(error)
        }
        logger.info("created \(request.id) in \(ContinuousClock.now - begun)")
        var event = Containerd_Events_TaskCreate()
        event.containerID = request.id
        event.bundle = request.bundle
        event.rootfs = request.rootfs
        event.io = .with { $0.stdin = request.stdin; $0.stdout = request.stdout; $0.stderr = request.stderr; $0.terminal = terminal }
        await events.publish(topic: "/tasks/create", event)
        return 0
    }

    private func ensureVM(annotations: [String: String], options: Google_Protobuf_Any, bundle: TaskBundle, id: String) async throws -> VMController {
        if let vm { return vm }
        let config = try SandboxConfig.from(annotations: annotations, base: Self.runtimeConfig(options))
        let group = ShimSocket.group(id: id, annotations: annotations)
        let vmID = "pod-" + String(SHA256.hex(Array(group.utf8)).prefix(12))
        let state = "\(stateRoot)/\(vmID)"
        // Durable intent first: delete must find the VM even if this process dies next.
        try bundle.write(state, to: bundle.vmFile)
        let image = try GuestImage.locate(directory: imageDirectory)
        let accelerator = await AcceleratorProbe().choose(forced: config.accelerator)
        let document = try VMBuilder(id: vmID, stateDirectory: state,
                                     kernel: config.kernel ?? image.kernel, initrd: config.initrd ?? image.initrd)
            .memory(mib: config.memoryMiB).vcpus(config.vcpus).accelerator(accelerator)
            .share(hostPath: state + "/share", tag: "skiffshare")
            .build()
        let controller = VMController(id: vmID, stateDirectory: state, logger: logger)
        vm = controller
        try await controller.createVM(document)
        try await controller.startVM(bootTimeout: config.bootTimeout)
        return controller
    }

    /// The VM settings of the runtime's config file, when containerd's runtime options name
    /// one (`ctr run --runtime-config-path`, or the CRI plugin's runtime options).
    static func runtimeConfig(_ options: Google_Protobuf_Any) throws(ServiceError) -> SandboxConfig {
        guard !options.typeURL.isEmpty else { return SandboxConfig() }
        guard options.typeURL.hasSuffix("runtimeoptions.v1.Options") else {
            throw .invalidArgument("runtime options of type \(options.typeURL) are not Skiff's (runtimeoptions.v1.Options)")
        }
        let decoded: Runtimeoptions_V1_Options
        do { decoded = try Runtimeoptions_V1_Options(serializedBytes: options.value) } catch {
            throw .invalidArgument("undecodable runtime options: \(error)")
        }
        guard !decoded.configPath.isEmpty else { return SandboxConfig() }
        guard let data = FileManager.default.contents(atPath: decoded.configPath) else {
            throw .invalidArgument("cannot read the runtime config file \(decoded.configPath)")
        }
        return try SandboxConfig.from(configFile: String(decoding: data, as: UTF8.self), path: decoded.configPath)
    }

    /// Terminates the VM (the last container left, or the first one failed).
    private func terminateVM() async {
        guard let vm else { return }
        do { try await vm.terminateVM() } catch { logger.error("terminating the VM: \(error)") }
        self.vm = nil
    }

    // MARK: Process records

    /// Task `id`'s process `execID` (its init when `execID` is empty).
    func record(_ id: String, _ execID: String) throws(ServiceError) -> ProcessRecord {
        guard let container = containers[id] else { throw .notFound("task \(id) not found") }
        if execID.isEmpty { return container.process }
        guard let exec = container.execs[execID] else { throw .notFound("exec \(execID) of task \(id) not found") }
        return exec.process
    }

    /// Changes that record where it is kept; nil if it is gone (deleted meanwhile).
    @discardableResult
    func update<T>(_ id: String, _ execID: String, _ change: (inout ProcessRecord) -> T) -> T? {
        guard var container = containers[id] else { return nil }
        let result: T
        if execID.isEmpty {
            result = change(&container.process)
        } else {
            guard var exec = container.execs[execID] else { return nil }
            result = change(&exec.process)
            container.execs[execID] = exec
        }
        containers[id] = container
        return result
    }

    // MARK: Start, wait, kill

    public func start(id: String, execID: String) async throws(ServiceError) -> UInt32 {
        guard execID.isEmpty else { return try await startExec(id: id, execID: execID) }
        guard let container = containers[id] else { throw .notFound("task \(id) not found") }
        guard container.process.status == .created else {
            throw .failedPrecondition("task \(id) is \(container.process.status), not created")
        }
        guard let vm, let guest = await vm.agentConnection else { throw .failedPrecondition("the VM is not running") }
        let begun = ContinuousClock.now
        // The guest root is the initramfs, which pivot_root cannot leave. `crun run` stays in
        // the foreground; the pid is the container's init, which crun writes to its pid file.
        let (io, pid) = try await launch(container.process, guest: guest) { pidFile in
            ["crun", "run", "--no-pivot", "--pid-file", pidFile, "--bundle", container.guestBundle,
             "--config", container.guestBundle + "/" + Self.guestConfigName, id]
        }
        // Re-read: Wait calls may have queued up while this awaited.
        logger.info("started \(id) (pid \(pid)) in \(ContinuousClock.now - begun)")
        update(id, "") { $0.started(pid: pid, io: io) }
        // The start event goes out before the exit watcher can publish the exit.
        var event = Containerd_Events_TaskStart()
        event.containerID = id
        event.pid = pid
        await events.publish(topic: "/tasks/start", event)
        Task { await self.watchExit(id: id, execID: "", agentID: container.process.agentID, guest: guest, io: io) }
        return pid
    }

    /// Starts a crun command as the agent's process for `process`, with containerd's stdio,
    /// and returns its stdio pumps and the pid crun wrote (see `processPid`). `command` gets
    /// the pid file's path.
    func launch(_ process: ProcessRecord, guest: GuestConnection,
                command: (String) -> [String]) async throws(ServiceError) -> (FifoIO, UInt32) {
        let terminal = process.terminal
        let io = try FifoIO.start(stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, terminal: terminal,
                                  mux: guest.stdio, nextStream: { guest.nextStreamID() })
        let agentID = process.agentID
        let pidFile = Self.guestPidFile(agentID)
        let response: Skiff_Agent_V1_CreateProcessResponse
        do {
            response = try await guest.agent.createProcess(.with {
                $0.id = agentID
                $0.args = command(pidFile)
                $0.terminal = terminal
                if let s = io.stdin { $0.stdinStream = s }
                if let s = io.stdout { $0.stdoutStream = s }
                if let s = io.stderr { $0.stderrStream = s }
            })
        } catch {
            io.abandon()
            throw ServiceError.from(error)
        }
        return (io, await processPid(guest: guest, pidFile: pidFile, launcher: response.pid))
    }

    /// Where crun writes the pid of the process it starts for the agent's process `agentID`.
    static func guestPidFile(_ agentID: String) -> String { "/run/skiff-pid-\(agentID)" }

    /// The pid crun wrote to `pidFile`, once it has (the launcher's own pid if crun ended
    /// without writing one, which its exit status and stderr then explain).
    func processPid(guest: GuestConnection, pidFile: String, launcher: UInt32) async -> UInt32 {
        let result = try? await guest.run(["sh", "-c", """
            i=0; while [ $i -lt 2000 ]; do [ -s \(pidFile) ] && { cat \(pidFile); rm -f \(pidFile); exit 0; }; \
            [ -d /proc/\(launcher) ] || exit 1; usleep 5000; i=$((i+1)); done; exit 2
            """], id: "pid-\(UInt32.random(in: 0...UInt32.max))")
        guard let result, result.exitStatus == 0,
              let pid = UInt32(String(decoding: result.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        else { return launcher }
        return pid
    }

    /// Waits for the process to end in the guest and its output to drain, then records how
    /// it ended.
    func watchExit(id: String, execID: String, agentID: String, guest: GuestConnection, io: FifoIO) async {
        let exit = await Self.awaitExit(agentID: agentID, guest: guest, io: io)
        // The container's init is gone, and with its PID namespace every exec'd process.
        if execID.isEmpty { await execsEnded(containerID: id) }
        await processExited(id: id, execID: execID, status: exit?.exitStatus ?? 255,
                            at: exit.map { Date(timeIntervalSince1970: Double($0.exitedAtNs) / 1e9) } ?? Date())
    }

    /// Waits for the agent's process `agentID` to end and its output to reach containerd (its
    /// stdin is no longer read), then drops it from the agent's table. Nil if the VM is gone.
    static func awaitExit(agentID: String, guest: GuestConnection, io: FifoIO) async -> Skiff_Agent_V1_WaitProcessResponse? {
        let exit = try? await guest.agent.waitProcess(.with { $0.id = agentID })
        io.stopStdin()
        await io.finished.value
        _ = try? await guest.agent.deleteProcess(.with { $0.id = agentID })
        return exit
    }

    /// Records an exit, tells containerd (TaskExit, carrying the exec id for an exec) and
    /// releases the Wait calls. A process's first exit is the only one.
    func processExited(id: String, execID: String, status: UInt32, at: Date) async {
        let recorded = update(id, execID) { record -> (waiters: [CheckedContinuation<Void, Never>], pid: UInt32)? in
            guard record.status != .stopped else { return nil }
            return (record.exited(status: status, at: at), record.pid)
        }
        guard let ended = recorded ?? nil else { return }
        await events.publish(topic: "/tasks/exit", Containerd_Events_TaskExit.with {
            $0.containerID = id
            $0.id = execID.isEmpty ? id : execID
            $0.pid = ended.pid
            $0.exitStatus = status
            $0.exitedAt = .init(date: at)
        })
        ended.waiters.forEach { $0.resume() }
    }

    /// How the process ended, once it has.
    public func wait(id: String, execID: String = "") async throws(ServiceError) -> (UInt32, Date) {
        if try record(id, execID).status != .stopped {
            await withCheckedContinuation { continuation in
                // Deleted meanwhile: nothing will end any more, so do not wait.
                if update(id, execID, { $0.addExitWaiter(continuation) }) == nil { continuation.resume() }
            }
        }
        guard let done = try? record(id, execID), done.status == .stopped else {
            throw .notFound("\(execID.isEmpty ? "task \(id)" : "exec \(execID) of task \(id)") was deleted while waiting")
        }
        return (done.exitStatus, done.exitedAt ?? Date())
    }

    public func kill(id: String, execID: String = "", signal: UInt32, all: Bool) async throws(ServiceError) {
        guard signal > 0, signal < 65 else { throw .invalidArgument("signal \(signal) is out of range") }
        guard execID.isEmpty else { return try await killExec(id: id, execID: execID, signal: signal) }
        guard let container = containers[id] else { throw .notFound("task \(id) not found") }
        guard container.process.isLive else {
            if container.process.status == .stopped { throw .notFound("task \(id) has already exited") }
            throw .failedPrecondition("task \(id) is not running")
        }
        guard let vm, let guest = await vm.agentConnection else { throw .failedPrecondition("the VM is not running") }
        // Every process of the container is in its cgroup; its init is the one that is PID 1
        // of the container's PID namespace (else the first there). `all` reaches them all.
        let procs = "/sys/fs/cgroup\(container.cgroupPath)/cgroup.procs"
        let script = all
            // One that ends meanwhile (the init's death ends the rest of its PID namespace) is
            // no failure.
            ? "for p in $(cat \(procs)); do kill -\(signal) $p 2>/dev/null || ! [ -e /proc/$p ] || exit 1; done"
            : """
              init=""; for p in $(cat \(procs)); do [ -z "$init" ] && init=$p; \
              if grep -q '^NSpid:.*[[:space:]]1$' /proc/$p/status; then init=$p; break; fi; done; \
              [ -n "$init" ] && kill -\(signal) $init
              """
        do {
            let result = try await guest.run(["sh", "-c", script], id: "kill-\(id)-\(UInt32.random(in: 0...UInt32.max))")
            guard result.exitStatus == 0 else {
                throw ServiceError.internalError("signalling \(id): \(String(decoding: result.stderr, as: UTF8.self))")
            }
        } catch {
            throw ServiceError.from(error)
        }
    }

    // MARK: Pause, resume, stats

    /// Freezes (`true`) or thaws the container's cgroup and waits until the kernel says so.
    public func setFrozen(id: String, _ frozen: Bool) async throws(ServiceError) {
        guard let container = containers[id] else { throw .notFound("task \(id) not found") }
        guard container.process.status == (frozen ? .running : .paused) else {
            throw .failedPrecondition("task \(id) is \(container.process.status), not \(frozen ? "running" : "paused")")
        }
        let cgroup = "/sys/fs/cgroup\(container.cgroupPath)"
        let script = """
            echo \(frozen ? 1 : 0) > \(cgroup)/cgroup.freeze || exit 1
            i=0; while [ $i -lt 400 ]; do grep -q '^frozen \(frozen ? 1 : 0)$' \(cgroup)/cgroup.events && exit 0; usleep 5000; i=$((i+1)); done; exit 2
            """
        try await runInGuest(script, what: frozen ? "pause \(id)" : "resume \(id)")
        update(id, "") { $0.paused(frozen) }
        if frozen {
            await events.publish(topic: "/tasks/paused", Containerd_Events_TaskPaused.with { $0.containerID = id })
        } else {
            await events.publish(topic: "/tasks/resumed", Containerd_Events_TaskResumed.with { $0.containerID = id })
        }
    }

    /// cgroup v2 figures of the container, read in the guest.
    public func metrics(id: String) async throws(ServiceError) -> Io_Containerd_Cgroups_V2_Metrics {
        guard let container = containers[id] else { throw .notFound("task \(id) not found") }
        guard container.process.isLive else { throw .failedPrecondition("task \(id) is \(container.process.status)") }
        let cgroup = "/sys/fs/cgroup\(container.cgroupPath)"
        let output = try await runInGuest("""
            cd \(cgroup) || exit 1
            for f in memory.current memory.max pids.current pids.max; do echo "$f $(cat $f 2>/dev/null)"; done
            sed 's/^/cpu.stat /' cpu.stat 2>/dev/null; sed 's/^/memory.stat /' memory.stat 2>/dev/null
            """, what: "metrics of \(id)")
        return CgroupMetrics.parse(output)
    }

    public func updateResources(id: String, memoryLimit: Int64?, pidsLimit: Int64?, cpuQuota: Int64?, cpuPeriod: UInt64?) async throws(ServiceError) {
        guard let container = containers[id] else { throw .notFound("task \(id) not found") }
        guard container.process.isLive else { throw .failedPrecondition("task \(id) is \(container.process.status)") }
        let cgroup = "/sys/fs/cgroup\(container.cgroupPath)"
        var lines: [String] = []
        if let memoryLimit { lines.append("echo \(memoryLimit > 0 ? String(memoryLimit) : "max") > \(cgroup)/memory.max") }
        if let pidsLimit { lines.append("echo \(pidsLimit > 0 ? String(pidsLimit) : "max") > \(cgroup)/pids.max") }
        if let cpuQuota { lines.append("echo '\(cpuQuota > 0 ? String(cpuQuota) : "max") \(cpuPeriod ?? 100000)' > \(cgroup)/cpu.max") }
        guard !lines.isEmpty else { return }
        try await runInGuest(lines.joined(separator: " && "), what: "update \(id)")
    }

    @discardableResult
    func runInGuest(_ script: String, what: String) async throws(ServiceError) -> String {
        guard let vm, let guest = await vm.agentConnection else { throw .failedPrecondition("the VM is not running") }
        let result: GuestConnection.CommandResult
        do {
            result = try await guest.run(["sh", "-c", script], id: "op-\(UInt32.random(in: 0...UInt32.max))")
        } catch {
            throw ServiceError.from(error)
        }
        guard result.exitStatus == 0 else {
            throw .internalError("\(what): \(String(decoding: result.stderr, as: UTF8.self)) (exit \(result.exitStatus))")
        }
        return String(decoding: result.stdout, as: UTF8.self)
    }

    // MARK: Delete, state

    public func delete(id: String, execID: String) async throws(ServiceError) -> (UInt32, UInt32, Date) {
        guard execID.isEmpty else { return try deleteExec(id: id, execID: execID) }
        guard let container = containers[id] else { throw .notFound("task \(id) not found") }
        guard !container.process.isLive else {
            throw .failedPrecondition("task \(id) is \(container.process.status); kill it first")
        }
        let begun = ContinuousClock.now
        defer { logger.info("deleted \(id) in \(ContinuousClock.now - begun)") }
        if let vm, let plan9 = await vm.plan9 {
            for share in container.shares.reversed() {
                do { try await plan9.unmapFromGuest(share) } catch { logger.error("unsharing \(id): \(error)") }
            }
        }
        umount2(container.bundle.rootfs, Int32(MNT_DETACH))
        unlink(container.bundle.path + "/" + Self.guestConfigName)
        for exec in container.execs.values { unlink(container.bundle.path + "/" + exec.specName) }
        containers[id] = nil
        if containers.isEmpty { await terminateVM() }
        unlink(container.bundle.vmFile)
        let process = container.process
        var event = Containerd_Events_TaskDelete()
        event.containerID = id
        event.pid = process.pid
        event.exitStatus = process.exitStatus
        event.exitedAt = .init(date: process.exitedAt ?? Date())
        await events.publish(topic: "/tasks/delete", event)
        return (process.pid, process.exitStatus, process.exitedAt ?? Date())
    }

    public func state(id: String, execID: String = "") throws(ServiceError) -> Containerd_Task_V2_StateResponse {
        guard let container = containers[id] else { throw .notFound("task \(id) not found") }
        // As containerd's runc shim answers: an exec's State carries its exec id as the id too.
        return try record(id, execID).stateResponse(id: execID.isEmpty ? id : execID, bundle: container.bundle.path, execID: execID)
    }

    public func pid(of id: String) throws(ServiceError) -> UInt32 {
        guard let c = containers[id] else { throw .notFound("task \(id) not found") }
        return c.process.pid
    }

    /// Every process of the container (its cgroup's, as the guest numbers them), the init
    /// first; just the init when the container is not running.
    public func processes(of id: String) async throws(ServiceError) -> [UInt32] {
        guard let c = containers[id] else { throw .notFound("task \(id) not found") }
        let initPid = c.process.pid
        guard c.process.isLive else { return initPid == 0 ? [] : [initPid] }
        let listed = try await runInGuest("cat /sys/fs/cgroup\(c.cgroupPath)/cgroup.procs", what: "processes of \(id)")
        let pids = listed.split(whereSeparator: \.isNewline).compactMap { UInt32($0) }
        return [initPid] + pids.filter { $0 != initPid }.sorted()
    }

    /// Ends the process's stdin once what containerd wrote has reached it.
    public func closeIO(id: String, execID: String = "") async throws(ServiceError) {
        _ = try record(id, execID)
        update(id, execID) { $0.closeStdin() }
    }

    /// Resizes the terminal of a process started with one (others have nothing to resize).
    public func resizePty(id: String, execID: String, width: UInt32, height: UInt32) async throws(ServiceError) {
        let process = try record(id, execID)
        // No terminal, not running, or a size nobody knows (0): nothing to resize.
        guard process.terminal, process.isLive, width > 0, height > 0 else { return }
        guard width <= UInt16.max, height <= UInt16.max else {
            throw .invalidArgument("terminal size \(width)x\(height) is out of range")
        }
        guard let vm, let guest = await vm.agentConnection else { throw .failedPrecondition("the VM is not running") }
        do {
            _ = try await guest.agent.resizeProcess(.with { $0.id = process.agentID; $0.width = width; $0.height = height })
        } catch {
            throw ServiceError.from(error)
        }
    }

    // MARK: Helpers

    static let guestConfigName = "skiff-config.json"

    static func validate(id: String) throws(ServiceError) {
        guard !id.isEmpty, id.count <= 128, id.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }),
              id != ".", id != ".." else {
            throw .invalidArgument("invalid task id \(id.debugDescription): letters, digits, '-', '_' and '.' only")
        }
    }

    /// The container's cgroup (v2) below /sys/fs/cgroup, as crun places it.
    static func cgroupPath(of spec: [String: Any], id: String) -> String {
        guard let linux = spec["linux"] as? [String: Any], let path = linux["cgroupsPath"] as? String, !path.isEmpty
        else { return "/" + id }
        return path.hasPrefix("/") ? path : "/" + path
    }

    /// containerd's OCI spec in the bundle, read once per create.
    static func spec(of bundle: TaskBundle) throws(ServiceError) -> [String: Any] {
        guard let data = FileManager.default.contents(atPath: bundle.configPath),
              let spec = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw .invalidArgument("cannot read the OCI spec at \(bundle.configPath)")
        }
        return spec
    }

    static func terminal(of spec: [String: Any]) throws(ServiceError) -> Bool {
        guard let process = spec["process"] as? [String: Any], let args = process["args"] as? [String], !args.isEmpty else {
            throw .invalidArgument("the OCI spec has no process.args")
        }
        return process["terminal"] as? Bool ?? false
    }

    /// A bind mount of the spec whose source is a host path: it must be shared into the VM.
    struct BindMount: Equatable {
        var index: Int
        var source: String
        var readOnly: Bool
    }

    /// The spec's bind mounts (type `bind`, or a `bind`/`rbind` option) of host paths, with the
    /// index of each in `mounts`. A source that does not exist is refused, as runc would.
    static func bindMounts(of spec: [String: Any]) throws(ServiceError) -> [BindMount] {
        let mounts = spec["mounts"] as? [[String: Any]] ?? []
        var binds: [BindMount] = []
        for (index, mount) in mounts.enumerated() {
            let options = mount["options"] as? [String] ?? []
            guard mount["type"] as? String == "bind" || options.contains("bind") || options.contains("rbind") else { continue }
            guard let source = mount["source"] as? String, source.hasPrefix("/") else {
                throw .invalidArgument("bind mount \(index) needs an absolute source")
            }
            guard access(source, F_OK) == 0 else { throw .invalidArgument("bind mount source \(source) does not exist") }
            binds.append(BindMount(index: index, source: source, readOnly: options.contains("ro")))
        }
        return binds
    }

    /// The spec crun runs in the guest (see `guestSpec`), written beside containerd's.
    private func writeGuestConfig(_ spec: [String: Any], bundle: TaskBundle, mountSources: [Int: String]) throws(ServiceError) {
        let podPids = Set(containers.values.filter { $0.process.isLive }.map { $0.process.pid })
        let (guest, dropped) = Self.guestSpec(spec, mountSources: mountSources, podPids: podPids)
        for note in dropped { logger.info("guest spec of \(bundle.path): \(note)") }
        guard let out = try? JSONSerialization.data(withJSONObject: guest) else { throw .internalError("cannot encode the guest spec") }
        guard FileManager.default.createFile(atPath: bundle.path + "/" + Self.guestConfigName, contents: out) else {
            throw .internalError("cannot write the guest spec")
        }
    }

    /// containerd's spec as crun must see it inside the VM, and what was left out (for the log):
    /// - the terminal is the agent's (crun would otherwise ask for a console socket);
    /// - bind mounts name their sources' guest paths (`mountSources`, by mount index);
    /// - the guest has only the unified cgroup hierarchy, so a v1 `cgroup` mount becomes the
    ///   `cgroup2` one a v2 host's spec would carry, and the container gets a cgroup namespace
    ///   as containerd gives it on such a host;
    /// - a namespace to join by path is kept only when the path is `/proc/PID/ns/...` of a
    ///   container of this pod (the pids containerd knows are the guest's, so the path holds
    ///   there); any other path, such as the network namespace the CRI plugin makes on the
    ///   host, does not exist in the VM, and the container gets a namespace of its own, which
    ///   the pod's later containers then join through its /proc path;
    /// - AppArmor and SELinux labels name host policy the guest does not have: the VM is the
    ///   pod's boundary.
    static func guestSpec(_ spec: [String: Any], mountSources: [Int: String], podPids: Set<UInt32>) -> (spec: [String: Any], dropped: [String]) {
        var spec = spec
        var dropped: [String] = []
        if var process = spec["process"] as? [String: Any] {
            process["terminal"] = false
            for key in ["apparmorProfile", "selinuxLabel"] {
                if let value = process.removeValue(forKey: key) { dropped.append("process.\(key) \(value)") }
            }
            spec["process"] = process
        }
        if var mounts = spec["mounts"] as? [[String: Any]] {
            for (index, source) in mountSources where index < mounts.count { mounts[index]["source"] = source }
            for index in mounts.indices where mounts[index]["type"] as? String == "cgroup" {
                mounts[index]["type"] = "cgroup2"
                mounts[index]["source"] = "cgroup2"
            }
            spec["mounts"] = mounts
        }
        if var linux = spec["linux"] as? [String: Any] {
            var namespaces = linux["namespaces"] as? [[String: Any]] ?? []
            for index in namespaces.indices {
                guard let path = namespaces[index]["path"] as? String else { continue }
                if let pid = Self.procNamespacePid(path), podPids.contains(pid) { continue }
                namespaces[index]["path"] = nil
                dropped.append("\(namespaces[index]["type"] as? String ?? "?") namespace path \(path) (not in the VM: a new one)")
            }
            if !namespaces.contains(where: { $0["type"] as? String == "cgroup" }) {
                namespaces.append(["type": "cgroup"])
            }
            linux["namespaces"] = namespaces
            if let label = linux.removeValue(forKey: "mountLabel") { dropped.append("linux.mountLabel \(label)") }
            spec["linux"] = linux
        }
        spec["root"] = ["path": "rootfs", "readonly": (spec["root"] as? [String: Any])?["readonly"] as? Bool ?? false]
        return (spec, dropped)
    }

    /// PID of a `/proc/PID/ns/TYPE` path.
    static func procNamespacePid(_ path: String) -> UInt32? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        guard parts.count == 4, parts[0] == "proc", parts[2] == "ns" else { return nil }
        return UInt32(parts[1])
    }

    private func mountRootfs(_ mounts: [Containerd_Types_Mount], at target: String) throws(ServiceError) {
        guard !mounts.isEmpty else { return }  // the bundle's rootfs is already in place
        guard mounts.count == 1, let m = mounts.first else { throw .invalidArgument("one rootfs mount expected, got \(mounts.count)") }
        mkdir(target, 0o755)
        var flags: UInt = 0
        var data: [String] = []
        for option in m.options {
            switch option {
            case "ro": flags |= UInt(MS_RDONLY)
            case "rw": break
            case "bind": flags |= UInt(MS_BIND)
            case "rbind": flags |= UInt(MS_BIND | MS_REC)
            default: data.append(option)
            }
        }
        let type = m.type == "bind" ? nil : m.type
        guard Glibc.mount(m.source, target, type, flags, data.isEmpty ? nil : data.joined(separator: ",")) == 0 else {
            throw .internalError("mount the rootfs (\(m.type)) on \(target): \(String(cString: strerror(errno)))")
        }
    }
}
