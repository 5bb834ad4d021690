import CSkiffSys
import Glibc

/// What to start: the agent's view of a CreateProcess request.
public struct ProcessSpec: Sendable {
    public var args: [String]
    public var env: [String]
    public var cwd: String
    public var terminal: Bool
    public var stdin: Bool
    public var stdout: Bool
    public var stderr: Bool
    public var width: UInt16
    public var height: UInt16

    public init(args: [String], env: [String] = [], cwd: String = "", terminal: Bool = false,
                stdin: Bool = false, stdout: Bool = false, stderr: Bool = false, width: UInt16 = 0, height: UInt16 = 0) {
        self.args = args
        self.env = env
        self.cwd = cwd
        self.terminal = terminal
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.width = width
        self.height = height
    }
}

/// A started process and the agent's ends of its stdio. Every descriptor is close-on-exec.
public struct SpawnedProcess: Sendable {
    public var pid: pid_t
    /// Write end of the process's stdin pipe (nil with a terminal or without stdin).
    public var stdin: Int32?
    /// Read ends of its stdout and stderr pipes.
    public var stdout: Int32?
    public var stderr: Int32?
    /// The terminal's master side: output to read, input to write, size to set.
    public var terminal: Int32?
}

/// Starts processes with `posix_spawn` in a new session: pipes or a pseudo-terminal for stdio,
/// /dev/null for streams nobody reads, the program found on the request's PATH.
public enum ProcessSpawner {
    public static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    public static func spawn(_ spec: ProcessSpec, reaper: ExitReaper) throws(AgentError) -> SpawnedProcess {
        guard let program = spec.args.first, !program.isEmpty else { throw .invalidArgument("args must name a program") }
        var env = spec.env
        if !env.contains(where: { $0.hasPrefix("PATH=") }) { env.append("PATH=" + defaultPath) }
        if spec.terminal, !env.contains(where: { $0.hasPrefix("TERM=") }) { env.append("TERM=xterm") }
        let path = try resolve(program, env: env)
        let cwd = spec.cwd.isEmpty ? "/" : spec.cwd
        guard access(cwd, F_OK) == 0 else { throw .invalidArgument("working directory \(cwd) does not exist") }

        var parentEnds: [Int32] = []  // closed on failure
        var childEnds: [Int32] = []   // always closed after the spawn
        defer { childEnds.forEach { _ = close($0) } }
        func makePipe() throws(AgentError) -> (read: Int32, write: Int32) {
            var fds: [Int32] = [-1, -1]
            guard skiff_pipe_cloexec(&fds) == 0 else { throw .errno("pipe") }
            // 1 MiB (the default pipe-max-size) rather than 64 KiB: the agent reads a process's
            // output in larger pieces, a frame each, and the process blocks less often.
            _ = skiff_set_pipe_size(fds[0], 1 << 20)
            return (fds[0], fds[1])
        }

        var result = SpawnedProcess(pid: 0)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        do {
            if spec.terminal {
                var master: Int32 = -1
                var name = [CChar](repeating: 0, count: 128)
                guard skiff_open_pty(&master, &name, UInt(name.count)) == 0 else { throw AgentError.errno("open pty") }
                parentEnds.append(master)
                result.terminal = master
                if spec.width > 0 || spec.height > 0 { _ = skiff_set_window_size(master, spec.height, spec.width) }
                // The child is a session leader without a terminal: opening the slave makes it
                // the controlling terminal.
                posix_spawn_file_actions_addopen(&actions, 0, name, O_RDWR, 0)
                posix_spawn_file_actions_adddup2(&actions, 0, 1)
                posix_spawn_file_actions_adddup2(&actions, 0, 2)
            } else {
                if spec.stdin {
                    let p = try makePipe()
                    parentEnds.append(p.write); childEnds.append(p.read)
                    result.stdin = p.write
                    posix_spawn_file_actions_adddup2(&actions, p.read, 0)
                } else {
                    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
                }
                for (fd, wanted) in [(Int32(1), spec.stdout), (Int32(2), spec.stderr)] {
                    if wanted {
                        let p = try makePipe()
                        parentEnds.append(p.read); childEnds.append(p.write)
                        if fd == 1 { result.stdout = p.read } else { result.stderr = p.read }
                        posix_spawn_file_actions_adddup2(&actions, p.write, fd)
                    } else {
                        posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", O_WRONLY, 0)
                    }
                }
            }
            skiff_spawn_addchdir(&actions, cwd)

            var attributes = posix_spawnattr_t()
            posix_spawnattr_init(&attributes)
            defer { posix_spawnattr_destroy(&attributes) }
            var all = sigset_t()
            sigfillset(&all)
            posix_spawnattr_setsigdefault(&attributes, &all)
            var none = sigset_t()
            sigemptyset(&none)
            posix_spawnattr_setsigmask(&attributes, &none)
            posix_spawnattr_setflags(&attributes, Int16(0x80 /* POSIX_SPAWN_SETSID */ | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

            let argv = spec.args.map { strdup($0) } + [nil]
            defer { argv.forEach { free($0) } }
            let envp = env.map { strdup($0) } + [nil]
            defer { envp.forEach { free($0) } }
            result.pid = try reaper.spawn { () throws(AgentError) -> pid_t in
                var pid: pid_t = 0
                let rc = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
                guard rc == 0 else { throw .system("start \(program)", rc) }
                return pid
            }
        } catch let error as AgentError {
            parentEnds.forEach { _ = close($0) }
            throw error
        } catch {
            parentEnds.forEach { _ = close($0) }
            throw .invalidArgument("\(error)")
        }
        return result
    }

    /// The program's path: as given when it has a slash, else the first executable match on PATH.
    static func resolve(_ program: String, env: [String]) throws(AgentError) -> String {
        if program.contains("/") {
            guard access(program, X_OK) == 0 else { throw .notFound("\(program): \(String(cString: strerror(errno)))") }
            return program
        }
        let path = env.last(where: { $0.hasPrefix("PATH=") }).map { String($0.dropFirst(5)) } ?? defaultPath
        for dir in path.split(separator: ":") {
            let candidate = dir + "/" + program
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw .notFound("\(program): executable file not found in $PATH")
    }
}
