import AgentAPI
import ContainerdAPI
import FoundationEssentials
import Glibc
import SkiffSupport
import SwiftProtobuf

/// What containerd asks of a created container: start, signals, pause and resume, figures,
/// limits, its processes, its state, delete.
extension ContainerController {
    /// A process of the container: its init for an empty `execID`.
    func process(_ execID: String) throws(SkiffError) -> ProcessController {
        if execID.isEmpty { return initProcess }
        guard let exec = execs[execID] else { throw .notFound("exec \(execID) of task \(id) not found") }
        return exec
    }

    /// Start: the init runs its program (`crun start`); its pid.
    func start() async throws(SkiffError) -> UInt32 {
        let guest = guest
        let id = id
        let begun = ContinuousClock.now
        FaultStop.beforeStart.reach()
        let pid = try await initProcess.start(guest: guest) { () async throws(SkiffError) in
            try await guestCall("start \(id)") { try await guest.startContainer(id: id) }
            FaultStop.duringStart.reach()
            return nil
        }
        logger.info("started \(id) (pid \(pid)) in \(ContinuousClock.now - begun)")
        return pid
    }

    /// Signals the init (or, with `all`, every process of the container), or an exec.
    /// - a stopped init: `all` still reaches what is left in the cgroup (no failure when
    ///   nothing is); without `all`, NotFound, as runc's shim answers;
    /// - a created init is signalled too (runc's shim allows it), and its exit is then watched;
    /// - an exec that has not started is FailedPrecondition, one that ended NotFound.
    func kill(execID: String, signal: UInt32, all: Bool) async throws(SkiffError) {
        guard signal > 0, signal < 65 else { throw .invalidArgument("signal \(signal) is out of range") }
        let process = try process(execID)
        let status = await process.status
        let guest = guest
        if execID.isEmpty, all {
            guard status != .deleted else { throw .notFound("task \(id) is deleted") }
            do {
                try await guestCall("signal every process of \(id)") { try await guest.signalContainer(id, signal: signal) }
            } catch where status == .stopped && (error.code == .notFound || error.code == .unavailable) {
                // Nothing is left of it (or of its VM): done.
            }
            return
        }
        switch status {
        case .stopped, .deleted: throw .notFound("\(await process.describe) has already exited")
        case .created where !execID.isEmpty: throw .failedPrecondition("exec \(execID) has not started")
        case .created, .running, .paused: break
        }
        let agentID = process.agentID
        try await guestCall("signal \(await process.describe)") { try await guest.signalProcess(agentID, signal: signal) }
        if status == .created { await process.watchExit(guest: guest) }
    }

    /// The pod's VM ended: its processes ended with it (exit 255, as an exit the agent never
    /// reported is recorded).
    func vmEnded() async {
        for process in [initProcess] + Array(execs.values) {
            await process.exited(status: 255, at: Date())
        }
    }

    /// Freezes (`true`) or thaws the container's cgroup, then publishes paused or resumed.
    func setPaused(_ paused: Bool) async throws(SkiffError) {
        let status = await initProcess.status
        guard status == (paused ? .running : .paused) else {
            throw .failedPrecondition("task \(id) is \(status), not \(paused ? "running" : "paused")")
        }
        let guest = guest
        let id = id
        try await guestCall(paused ? "pause \(id)" : "resume \(id)") {
            if paused { try await guest.pauseContainer(id) } else { try await guest.resumeContainer(id) }
        }
        await initProcess.setPaused(paused)
        if paused {
            await events.publish(topic: "/tasks/paused", Containerd_Events_TaskPaused.with { $0.containerID = id })
        } else {
            await events.publish(topic: "/tasks/resumed", Containerd_Events_TaskResumed.with { $0.containerID = id })
        }
    }

    private func requireLive() async throws(SkiffError) {
        guard await initProcess.isLive else { throw .failedPrecondition("task \(id) is \(await initProcess.status)") }
    }

    /// cgroup v2 figures of the container, read in the guest.
    func metrics() async throws(SkiffError) -> Io_Containerd_Cgroups_V2_Metrics {
        try await requireLive()
        let guest = guest
        let id = id
        return CgroupMetrics.metrics(try await guestCall("metrics of \(id)") { try await guest.containerStats(id) })
    }

    /// Applies containerd's `LinuxResources` (an Any holding its JSON) to the cgroup.
    func update(resources: Google_Protobuf_Any) async throws(SkiffError) {
        let request = try LinuxResources.decode(resources).agentRequest(containerID: id)
        try await requireLive()
        let guest = guest
        try await guestCall("update \(id)") { try await guest.updateContainer(request) }
    }

    /// Every process of the container, the init first; just the init when it does not run.
    func processes() async throws(SkiffError) -> [UInt32] {
        let pid = await initProcess.pid
        guard await initProcess.isLive else { return pid == 0 ? [] : [pid] }
        let guest = guest
        let id = id
        return try await guestCall("processes of \(id)") { try await guest.containerPids(id) }
    }

    func state(execID: String) async throws(SkiffError) -> Containerd_Task_V2_StateResponse {
        await (try process(execID)).stateResponse(bundle: bundle.path)
    }

    func wait(execID: String) async throws(SkiffError) -> (status: UInt32, at: Date) {
        try await (try process(execID)).wait()
    }

    func closeIO(execID: String) async throws(SkiffError) {
        await (try process(execID)).closeStdin()
    }

    /// Resizes the terminal of a process started with one (others have nothing to resize).
    func resizePty(execID: String, width: UInt32, height: UInt32) async throws(SkiffError) {
        let process = try process(execID)
        // No terminal, not running, or a size nobody knows (0): nothing to resize.
        guard process.terminal, await process.isLive, width > 0, height > 0 else { return }
        guard width <= UInt16.max, height <= UInt16.max else { throw .invalidArgument("terminal size \(width)x\(height) is out of range") }
        let guest = guest
        let agentID = process.agentID
        try await guestCall("resize the terminal of \(await process.describe)") {
            try await guest.resizeProcess(agentID, width: width, height: height)
        }
    }

    /// The init ended, and with its PID namespace every exec'd process: an exec that never
    /// started can no longer.
    func initExited() async {
        for exec in execs.values where await exec.status == .created {
            await exec.exited(status: 255, at: Date())
        }
    }

    /// Delete of the container: refused while its init lives; then releases everything it
    /// holds, resumably (see the type's doc). The init's pid, exit status and time.
    func delete() async throws(SkiffError) -> (pid: UInt32, status: UInt32, at: Date) {
        let status = await initProcess.status
        guard status != .running, status != .paused else { throw .failedPrecondition("task \(id) is \(status); kill it first") }
        if status == .created {
            // Never started: `crun delete --force` ends the waiting init; its exit is then
            // collected like any other.
            let guest = guest
            let id = id
            try await guestCall("delete \(id) in the VM") { try await guest.deleteContainer(id) }
            await initProcess.watchExit(guest: guest)
            _ = try? await initProcess.wait()
        }
        var remaining = releases
        FaultStop.duringDelete.reach()
        do {
            try await Self.release(&remaining, guest: guest, shares: shares, disks: disks, devices: devices, rootfs: rootfs, containerID: id, logger: logger,
                                   stopAtFailure: true)
        } catch {
            // What is left stays for the next Delete, which resumes there.
            releases = remaining
            throw error
        }
        releases = remaining
        for (execID, exec) in execs {
            _ = try? await exec.delete()
            unlink(bundle.path + "/" + Self.execSpecName(execID))
        }
        execs = [:]
        if await initProcess.status == .deleted {
            let exit = (pid: await initProcess.pid, status: await initProcess.exitStatus, at: await initProcess.exitedAt ?? Date())
            return exit
        }
        return try await initProcess.delete()
    }
}
