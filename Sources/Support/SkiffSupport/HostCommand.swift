import Glibc

/// A program run to its end on the host, with an argument vector (never shell text): its exit
/// status and what it printed (stdout and stderr together, as a log file holds them).
public enum HostCommand {
    /// A system tool's path in the usual directories (Debian's e2fsprogs, erofs-utils,
    /// iproute2, util-linux), or nil.
    public static func locate(_ program: String) -> String? {
        ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map { "\($0)/\(program)" }.first { access($0, X_OK) == 0 }
    }

    /// Runs `path` with `arguments`; status (128 + the signal for a killed one) and output.
    /// The wait happens on a thread of its own.
    public static func run(_ path: String, _ arguments: [String]) async -> (status: Int32, output: String) {
        let job = Job(path: path, arguments: arguments)
        return await BlockingThread.run({ job.run() }, fallback: (127, "cannot start a thread for \(path)"))
    }

    private struct Job: Sendable {
        let path: String
        let arguments: [String]

        func run() -> (status: Int32, output: String) {
            var fds: [Int32] = [-1, -1]
            guard pipe(&fds) == 0 else { return (127, "pipe: \(String(cString: strerror(errno)))") }
            // Close-on-exec, so no other child started meanwhile holds the pipe open.
            _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
            posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
            posix_spawn_file_actions_addclose(&actions, fds[0])
            let argv = ([path] + arguments).map { strdup($0) } + [nil]
            defer { argv.forEach { free($0) } }
            var pid: pid_t = 0
            let rc = posix_spawn(&pid, path, &actions, nil, argv, environ)
            close(fds[1])
            guard rc == 0 else {
                close(fds[0])
                return (127, "cannot start \(path): \(String(cString: strerror(rc)))")
            }
            var output: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 8192)
            while true {
                let n = read(fds[0], &buffer, buffer.count)
                if n < 0, errno == EINTR { continue }
                if n <= 0 { break }
                output += buffer[0..<n]
            }
            close(fds[0])
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0, errno == EINTR {}
            let signal = status & 0x7f
            return (signal == 0 ? (status >> 8) & 0xff : 128 + signal, String(decoding: output, as: UTF8.self))
        }
    }
}
