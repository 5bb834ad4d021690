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
        guard container.process.status == .running else {
            throw .failedPrecondition("task \(id) is \(container.process.status): exec needs a running task")
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
        containers[id]?.execs[execID] = ExecProcess(specName: specName, process: ProcessRecord(
            agentID: ExecProcess.agentID(containerID: id, execID: execID), terminal: terminal,
            stdin: stdin, stdout: stdout, stderr: stderr))
        await events.publish(topic: "/tasks/exec-added", Containerd_Events_TaskExecAdded.with {
            $0.containerID = id
            $0.execID = execID
        })
    }

    func startExec(id: String, execID: String) async throws(ServiceError) -> UInt32 {
        guard let container = containers[id] else { throw .notFound("task \(id) not found") }
        guard let exec = container.execs[execID] else { throw .notFound("exec \(execID) of task \(id) not found") }
        guard exec.process.status == .created else {
            throw .failedPrecondition("exec \(execID) is \(exec.process.status), not created")
        }
        guard container.process.status == .running else { throw .failedPrecondition("task \(id) is \(container.process.status)") }
        guard let vm, let guest = await vm.agentConnection else { throw .failedPrecondition("the VM is not running") }
        let (io, pid) = try await launch(exec.process, guest: guest) { pidFile in
            ["crun", "exec", "--pid-file", pidFile, "--process", container.guestBundle + "/" + exec.specName, id]
        }
        update(id, execID) { $0.started(pid: pid, io: io) }
        // exec-started goes out before the exit watcher can publish the exit.
        await events.publish(topic: "/tasks/exec-started", Containerd_Events_TaskExecStarted.with {
            $0.containerID = id
            $0.execID = execID
            $0.pid = pid
        })
        Task { await self.watchExit(id: id, execID: execID, agentID: exec.process.agentID, guest: guest, io: io) }
        return pid
    }

    /// The container's init ended: an exec that never started can no longer, and any still
    /// waited on is released once its own exit is in (its watcher reports it).
    func execsEnded(containerID: String) async {
        guard let container = containers[containerID] else { return }
        for (execID, exec) in container.execs where exec.process.status == .created {
            await processExited(id: containerID, execID: execID, status: 255, at: Date())
        }
    }

    func killExec(id: String, execID: String, signal: UInt32) async throws(ServiceError) {
        guard let exec = containers[id]?.execs[execID] else { throw .notFound("exec \(execID) of task \(id) not found") }
        switch exec.process.status {
        case .created: throw .failedPrecondition("exec \(execID) has not started")
        case .stopped: throw .notFound("exec \(execID) has already exited")
        case .running, .paused: break
        }
        try await runInGuest("kill -\(signal) \(exec.process.pid)", what: "signal exec \(execID) of \(id)")
    }

    func deleteExec(id: String, execID: String) throws(ServiceError) -> (UInt32, UInt32, Date) {
        guard let container = containers[id] else { throw .notFound("task \(id) not found") }
        guard let exec = container.execs[execID] else { throw .notFound("exec \(execID) of task \(id) not found") }
        guard !exec.process.isLive else { throw .failedPrecondition("exec \(execID) is running; kill it first") }
        unlink(container.bundle.path + "/" + exec.specName)
        containers[id]?.execs[execID] = nil
        return (exec.process.pid, exec.process.exitStatus, exec.process.exitedAt ?? Date())
    }
}
