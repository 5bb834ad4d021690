import AgentAPI
import ContainerdAPI
import Foundation
import Glibc
import GuestManager
import SwiftProtobuf

/// Exec: more processes in a running container. The shim writes the process spec into the
/// bundle (which the guest sees through the share), and the guest runs `crun exec` with it;
/// crun writes the new process's pid, which is what containerd gets, and exits with its
/// status. Events follow containerd's runc shim: exec-added on Exec, exec-started on Start,
/// exit with the exec id; no delete event for an exec.
extension Pod {
    public func exec(id: String, execID: String, terminal: Bool, stdin: String, stdout: String, stderr: String,
                     spec: Google_Protobuf_Any) async throws(ServiceError) {
        try Self.validate(id: execID)
        guard let container = containers[id] else { throw .notFound("task \(id) not found") }
        guard container.execs[execID] == nil else { throw .alreadyExists("exec \(execID) of task \(id) already exists") }
        guard container.status == .running else {
            throw .failedPrecondition("task \(id) is \(container.status): exec needs a running task")
        }
        guard var process = (try? JSONSerialization.jsonObject(with: spec.value)) as? [String: Any] else {
            throw .invalidArgument("the exec process spec is not a JSON object")
        }
        guard let args = process["args"] as? [String], !args.isEmpty else {
            throw .invalidArgument("the exec process spec has no args")
        }
        // The agent provides the terminal; crun would otherwise ask for a console socket.
        process["terminal"] = false
        let specName = "skiff-exec-\(execID).json"
        guard let data = try? JSONSerialization.data(withJSONObject: process),
              FileManager.default.createFile(atPath: container.bundle.path + "/" + specName, contents: data) else {
            throw .internalError("cannot write the exec process spec into \(container.bundle.path)")
        }
        containers[id]?.execs[execID] = ExecProcess(
            id: execID, containerID: id, terminal: terminal, stdin: stdin, stdout: stdout, stderr: stderr, specName: specName)
        await events.publish(topic: "/tasks/exec-added", Containerd_Events_TaskExecAdded.with {
            $0.containerID = id
            $0.execID = execID
        })
    }

    func startExec(id: String, execID: String) async throws(ServiceError) -> UInt32 {
        guard let container = containers[id] else { throw .notFound("task \(id) not found") }
        guard let exec = container.execs[execID] else { throw .notFound("exec \(execID) of task \(id) not found") }
        guard exec.status == .created else { throw .failedPrecondition("exec \(execID) is \(exec.status), not created") }
        guard container.status == .running else { throw .failedPrecondition("task \(id) is \(container.status)") }
        guard let vm, let guest = await vm.agentConnection else { throw .failedPrecondition("the VM is not running") }
        let (io, pid) = try await launch(
            agentID: exec.agentID, terminal: exec.terminal, stdin: exec.stdin, stdout: exec.stdout, stderr: exec.stderr,
            guest: guest) { pidFile in
            ["crun", "exec", "--pid-file", pidFile, "--process", container.guestBundle + "/" + exec.specName, id]
        }
        containers[id]?.execs[execID]?.pid = pid
        containers[id]?.execs[execID]?.status = .running
        containers[id]?.execs[execID]?.io = io
        if containers[id]?.execs[execID]?.stdinClosed == true { io.closeStdin() }
        // exec-started goes out before the exit watcher can publish the exit.
        await events.publish(topic: "/tasks/exec-started", Containerd_Events_TaskExecStarted.with {
            $0.containerID = id
            $0.execID = execID
            $0.pid = pid
        })
        Task { await self.watchExecExit(id: id, execID: execID, agentID: exec.agentID, guest: guest, io: io) }
        return pid
    }

    private func watchExecExit(id: String, execID: String, agentID: String, guest: GuestConnection, io: FifoIO) async {
        let exit = try? await guest.agent.waitProcess(.with { $0.id = agentID })
        await io.finished.value
        _ = try? await guest.agent.deleteProcess(.with { $0.id = agentID })
        await execExited(id: id, execID: execID, status: exit?.exitStatus ?? 255,
                         at: exit.map { Date(timeIntervalSince1970: Double($0.exitedAtNs) / 1e9) } ?? Date())
    }

    private func execExited(id: String, execID: String, status: UInt32, at: Date) async {
        guard var exec = containers[id]?.execs[execID], exec.status != .stopped else { return }
        exec.status = .stopped
        exec.exitStatus = status
        exec.exitedAt = at
        let waiters = exec.exitWaiters
        exec.exitWaiters = []
        containers[id]?.execs[execID] = exec
        await events.publish(topic: "/tasks/exit", Containerd_Events_TaskExit.with {
            $0.containerID = id
            $0.id = execID
            $0.pid = exec.pid
            $0.exitStatus = status
            $0.exitedAt = .init(date: at)
        })
        waiters.forEach { $0.resume() }
    }

    /// The container's init ended: an exec that never started can no longer, and any still
    /// waited on is released once its own exit is in (its watcher reports it).
    func execsEnded(containerID: String) async {
        guard let container = containers[containerID] else { return }
        for (execID, exec) in container.execs where exec.status == .created {
            await execExited(id: containerID, execID: execID, status: 255, at: Date())
        }
    }

    func waitExec(id: String, execID: String) async throws(ServiceError) -> (UInt32, Date) {
        guard let exec = containers[id]?.execs[execID] else { throw .notFound("exec \(execID) of task \(id) not found") }
        if exec.status != .stopped {
            await withCheckedContinuation { continuation in containers[id]?.execs[execID]?.exitWaiters.append(continuation) }
        }
        guard let done = containers[id]?.execs[execID] else { throw .notFound("exec \(execID) of task \(id) was deleted while waiting") }
        return (done.exitStatus, done.exitedAt ?? Date())
    }

    func killExec(id: String, execID: String, signal: UInt32) async throws(ServiceError) {
        guard let exec = containers[id]?.execs[execID] else { throw .notFound("exec \(execID) of task \(id) not found") }
        switch exec.status {
        case .created: throw .failedPrecondition("exec \(execID) has not started")
        case .stopped: throw .notFound("exec \(execID) has already exited")
        case .running: break
        }
        try await runInGuest("kill -\(signal) \(exec.pid)", what: "signal exec \(execID) of \(id)")
    }

    func deleteExec(id: String, execID: String) throws(ServiceError) -> (UInt32, UInt32, Date) {
        guard let container = containers[id] else { throw .notFound("task \(id) not found") }
        guard let exec = container.execs[execID] else { throw .notFound("exec \(execID) of task \(id) not found") }
        guard exec.status != .running else { throw .failedPrecondition("exec \(execID) is running; kill it first") }
        unlink(container.bundle.path + "/" + exec.specName)
        containers[id]?.execs[execID] = nil
        return (exec.pid, exec.exitStatus, exec.exitedAt ?? Date())
    }

    func stateOfExec(id: String, execID: String) throws(ServiceError) -> Containerd_Task_V2_StateResponse {
        guard let container = containers[id] else { throw .notFound("task \(id) not found") }
        guard let exec = container.execs[execID] else { throw .notFound("exec \(execID) of task \(id) not found") }
        var state = exec.stateResponse(id: execID, bundle: container.bundle.path)
        state.execID = execID
        return state
    }
}
