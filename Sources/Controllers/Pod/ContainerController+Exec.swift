import ContainerdAPI
import FoundationEssentials
import Glibc
import SkiffSupport
import SwiftProtobuf

/// Exec: more processes in a running container. The shim writes the process spec into the
/// bundle (which the guest sees through its share), and at Start the agent runs `crun exec
/// --detach` of it; crun's pid file gives the pid containerd gets. Events follow containerd's
/// runc shim: exec-added on Exec, exec-started on Start, exit with the exec id; no delete
/// event for an exec.
extension ContainerController {
    /// The process spec's file name in the bundle.
    static func execSpecName(_ execID: String) -> String { "skiff-exec-\(execID).json" }

    /// The agent knows an exec as "CONTAINER.exec.EXEC".
    static func execAgentID(containerID: String, execID: String) -> String { "\(containerID).exec.\(execID)" }

    func exec(execID: String, terminal: Bool, stdin: String, stdout: String, stderr: String,
              spec: Google_Protobuf_Any) async throws(SkiffError) {
        try ContainerdIdentifier.validate(execID, what: "exec id")
        guard execs[execID] == nil else { throw .alreadyExists("exec \(execID) of task \(id) already exists") }
        let status = await initProcess.status
        guard status == .running else { throw .failedPrecondition("task \(id) is \(status): exec needs a running task") }
        var process: OCISpec.Process
        do { process = try JSONDecoder().decode(OCISpec.Process.self, from: spec.value) } catch {
            throw .invalidArgument("the exec process spec is not an OCI process: \(error)", cause: error)
        }
        guard let args = process.args, !args.isEmpty else { throw .invalidArgument("the exec process spec has no args") }
        // Host security labels name policy the guest does not have (see GuestSpec.make).
        process.apparmorProfile = nil
        process.selinuxLabel = nil
        // The process's own terminal setting is what crun honours; containerd's flag says the same.
        process.terminal = terminal
        let path = bundle.path + "/" + Self.execSpecName(execID)
        let data: Data
        do { data = try JSONEncoder().encode(process) } catch { throw .internalError("cannot encode the exec spec", cause: error) }
        guard FileManager.default.createFile(atPath: path, contents: data) else {
            throw .internalError("cannot write the exec process spec into \(bundle.path)")
        }
        execs[execID] = ProcessController(
            containerID: id, kind: .exec(id: execID), agentID: Self.execAgentID(containerID: id, execID: execID),
            terminal: terminal, stdin: stdin, stdout: stdout, stderr: stderr, events: events)
        await events.publish(topic: "/tasks/exec-added", Containerd_Events_TaskExecAdded.with {
            $0.containerID = id
            $0.execID = execID
        })
    }

    func startExec(execID: String) async throws(SkiffError) -> UInt32 {
        let process = try process(execID)
        let status = await initProcess.status
        guard status == .running else { throw .failedPrecondition("task \(id) is \(status)") }
        let guest = guest
        let id = id
        let specPath = guestBundle + "/" + Self.execSpecName(execID)
        return try await process.start(guest: guest) { () async throws(SkiffError) in
            let io = try guest.openStdio(stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, terminal: process.terminal,
                                         deferStdin: false)
            do throws(SkiffError) {
                let pid = try await guestCall("exec \(execID) in \(id)") {
                    try await guest.execProcess(containerID: id, processID: process.agentID, processSpec: specPath, io: io,
                                                terminal: process.terminal)
                }
                return (pid, io)
            } catch {
                io.abandon()
                throw error
            }
        }
    }

    func deleteExec(execID: String) async throws(SkiffError) -> (pid: UInt32, status: UInt32, at: Date) {
        let process = try process(execID)
        let result = try await process.delete()
        unlink(bundle.path + "/" + Self.execSpecName(execID))
        execs[execID] = nil
        return result
    }
}
