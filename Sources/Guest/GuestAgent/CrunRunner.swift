import AgentAPI
import CSkiffSys
import Glibc
import Synchronization

/// Runs crun (the OCI runtime in the guest) for the container calls of the agent API. Every
/// call is an argument vector: ids and paths from the host are arguments, never shell text.
/// crun's own messages go to a log file per call, so a refusal comes back as the call's
/// error instead of landing in the container's stderr.
///
/// `launch` runs `crun create` or `crun exec --detach`: crun starts the process and exits,
/// the process becomes the agent's by re-parenting (the agent is PID 1), and its pid is what
/// crun wrote to the pid file, known as soon as crun has exited, without polling. With a
/// terminal, crun makes the pseudo-terminal in the container (so it is the process's
/// controlling terminal) and passes its master over the console socket.
public final class CrunRunner: Sendable {
    /// The crun binary.
    public let crun: String
    /// Where the pid files, logs and console sockets of calls in flight live.
    public let runDirectory: String
    private let serials = Atomic<UInt64>(0)

    public init(crun: String = "/usr/bin/crun", runDirectory: String = "/run/skiff") {
        self.crun = crun
        self.runDirectory = runDirectory
    }

    /// What `launch` started: the process (its pid as the guest numbers it) and the agent's
    /// ends of its stdio, as a spawned process carries them.
    public typealias Launched = SpawnedProcess

    /// Runs crun with `arguments(pidFile, consoleSocket)` and the stdio `stdio` asks for, and
    /// returns the process crun started. Throws FailedPrecondition with crun's message when
    /// crun fails.
    func launch(_ what: String, stdio: Skiff_Agent_V1_ProcessStdio, reaper: ExitReaper,
                arguments: (_ pidFile: String, _ consoleSocket: String?) -> [String]) async throws(AgentError) -> Launched {
        let serial = serials.add(1, ordering: .relaxed).newValue
        try Mounts.makeDirectories(runDirectory)
        let pidFile = "\(runDirectory)/pid-\(serial)"
        let logFile = "\(runDirectory)/crun-\(serial).log"
        defer { unlink(pidFile); unlink(logFile) }
        var console: ConsoleSocket?
        if stdio.terminal { console = try ConsoleSocket(path: "\(runDirectory)/console-\(serial).sock") }
        defer { console?.close() }

        let spec = ProcessSpec(
            args: [crun, "--log=\(logFile)"] + arguments(pidFile, console?.path),
            stdin: !stdio.terminal && stdio.stdinStream != 0,
            stdout: !stdio.terminal && stdio.stdoutStream != 0,
            stderr: !stdio.terminal && stdio.stderrStream != 0)
        let mark = reaper.mark()
        var launcher = try ProcessSpawner.spawn(spec, reaper: reaper)
        let status = WaitStatus(raw: await reaper.waitStatus(of: launcher.pid))
        reaper.forget(launcher.pid)
        let master = await console?.received()
        func abandon() {
            for fd in [launcher.stdin, launcher.stdout, launcher.stderr, master].compactMap({ $0 }) { Glibc.close(fd) }
        }
        guard status.exitCode == 0 else {
            abandon()
            throw .failedPrecondition("\(what): \(Self.message(logFile: logFile, status: status))")
        }
        guard let pid = readTextFile(pidFile).flatMap({ pid_t($0.trimmingNewlines()) }), pid > 0 else {
            abandon()
            throw .failedPrecondition("\(what): crun wrote no pid")
        }
        if stdio.terminal {
            guard let master else {
                abandon()
                throw .failedPrecondition("\(what): crun passed no terminal")
            }
            if stdio.width > 0 || stdio.height > 0 {
                _ = skiff_set_window_size(master, UInt16(clamping: stdio.height), UInt16(clamping: stdio.width))
            }
            launcher.terminal = master
        }
        reaper.adopt(pid, since: mark)
        launcher.pid = pid
        return launcher
    }

    /// Runs crun with `arguments` to the end; FailedPrecondition with crun's message if it fails.
    func run(_ what: String, _ arguments: [String], reaper: ExitReaper) async throws(AgentError) {
        let serial = serials.add(1, ordering: .relaxed).newValue
        try Mounts.makeDirectories(runDirectory)
        let logFile = "\(runDirectory)/crun-\(serial).log"
        defer { unlink(logFile) }
        let launcher = try ProcessSpawner.spawn(ProcessSpec(args: [crun, "--log=\(logFile)"] + arguments), reaper: reaper)
        let status = WaitStatus(raw: await reaper.waitStatus(of: launcher.pid))
        reaper.forget(launcher.pid)
        guard status.exitCode == 0 else {
            throw .failedPrecondition("\(what): \(Self.message(logFile: logFile, status: status))")
        }
    }

    /// crun's last words in its log (the error it failed with), or how it ended.
    static func message(logFile: String, status: WaitStatus) -> String {
        let lines = (readTextFile(logFile) ?? "").split(separator: "\n").filter { !$0.isEmpty }
        guard !lines.isEmpty else { return "crun exited with \(status.exitCode)" }
        return lines.suffix(3).joined(separator: "; ")
    }
}

/// The listening end of an OCI runtime's `--console-socket`: one connection brings the
/// terminal master. Accepting happens on a thread of its own; `received` shuts the listener
/// down first, so it returns at once once the runtime has exited, whether or not it sent.
final class ConsoleSocket: Sendable {
    let path: String
    private let listener: Int32
    private let result: Task<Int32?, Never>

    init(path: String) throws(AgentError) {
        let fd = skiff_unix_listen(path)
        guard fd >= 0 else { throw .system("console socket \(path)", -fd) }
        self.path = path
        listener = fd
        result = Task {
            await withCheckedContinuation { continuation in
                startThread {
                    let received = skiff_accept_fd(fd)
                    continuation.resume(returning: received >= 0 ? received : nil)
                }
            }
        }
    }

    /// The master the runtime sent, if it did. Call once the runtime has exited.
    func received() async -> Int32? {
        shutdown(listener, Int32(SHUT_RDWR))
        return await result.value
    }

    func close() {
        shutdown(listener, Int32(SHUT_RDWR))
        Glibc.close(listener)
        unlink(path)
    }
}
