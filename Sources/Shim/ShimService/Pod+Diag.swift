import Foundation
import Glibc
import GuestManager
import VMController

/// What shimdiag asks of the pod: a command in the VM itself (outside every container), the
/// pod's tasks, and a host directory shared into the VM at a path of the caller's choosing.
extension Pod {
    /// Runs `args` in the VM with containerd-style stdio paths (fifos or `file://`); no stdin.
    /// Returns the exit code (128 + the signal for a killed process).
    func execInVM(args: [String], workdir: String, stdout: String, stderr: String) async throws(ServiceError) -> Int32 {
        guard !args.isEmpty else { throw .invalidArgument("exec needs a command") }
        guard let vm, let guest = await vm.agentConnection else { throw .failedPrecondition("the VM is not running") }
        let io = try FifoIO.start(stdin: "", stdout: stdout, stderr: stderr, terminal: false,
                                  mux: guest.stdio, nextStream: { guest.nextStreamID() })
        let agentID = "diag-\(UInt32.random(in: 0...UInt32.max))"
        do {
            _ = try await guest.agent.createProcess(.with {
                $0.id = agentID
                $0.args = args
                $0.cwd = workdir
                if let s = io.stdout { $0.stdoutStream = s }
                if let s = io.stderr { $0.stderrStream = s }
            })
        } catch {
            io.abandon()
            throw ServiceError.from(error)
        }
        guard let exit = await Self.awaitExit(agentID: agentID, guest: guest, io: io) else { throw .internalError("lost the exit of \(args[0])") }
        return Int32(clamping: exit.exitStatus)
    }

    /// The pod's containers, each with its state and, when asked, its execs.
    func taskList() -> [(id: String, state: String, execs: [(id: String, state: String)])] {
        containers.values.sorted { $0.id < $1.id }.map { container in
            (container.id, "\(container.process.status)",
             container.execs.sorted { $0.key < $1.key }.map { ($0.key, "\($0.value.process.status)") })
        }
    }

    /// Shares `hostPath` into the VM and mounts it at `guestPath` there (read-only if asked).
    /// It stays until the VM ends.
    func shareIntoVM(hostPath: String, guestPath: String, readOnly: Bool) async throws(ServiceError) {
        guard hostPath.hasPrefix("/"), guestPath.hasPrefix("/") else { throw .invalidArgument("both paths must be absolute") }
        guard access(hostPath, F_OK) == 0 else { throw .invalidArgument("\(hostPath) does not exist") }
        guard let vm, let plan9 = await vm.plan9, let guest = await vm.agentConnection else {
            throw .failedPrecondition("the VM is not running")
        }
        let share: Plan9Controller.ShareID
        do { share = try await plan9.reserve(hostPath: hostPath, readOnly: readOnly) } catch { throw ServiceError.from(error) }
        do {
            let mapped = try await plan9.mapToGuest(share)
            _ = try await guest.agent.mount(.with {
                $0.source = mapped
                $0.target = guestPath
                $0.options = readOnly ? ["bind", "ro"] : ["bind"]
            })
        } catch {
            // Half made (host bind, guest mount): undone, so a refused share holds nothing.
            do { try await plan9.unmapFromGuest(share) } catch { logger.error("undoing the share of \(hostPath): \(error)") }
            throw ServiceError.from(error)
        }
    }

    /// The VM's agent's threads, as the guest sees them.
    func guestStacks() async throws(ServiceError) -> String {
        guard let vm else { throw .failedPrecondition("the VM is not running") }
        do { return try await vm.dumpStacks() } catch { throw ServiceError.from(error) }
    }
}
