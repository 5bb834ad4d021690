import CSkiffSys
import Glibc
import Synchronization

/// How a child process ended.
public enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    /// The shell convention: the exit code, or 128 + the signal.
    public var code: Int32 {
        switch self {
        case let .exited(code): return code
        case let .signaled(signal): return 128 + signal
        }
    }

    public var description: String {
        switch self {
        case let .exited(code): return "exited with \(code)"
        case let .signaled(signal): return "killed by signal \(signal)"
        }
    }

    init(waitStatus status: Int32) {
        if status & 0x7f == 0 {
            self = .exited((status >> 8) & 0xff)
        } else {
            self = .signaled(status & 0x7f)
        }
    }
}

/// A process this one started, with an exit that can be awaited without blocking any
/// concurrency thread: a dedicated thread sits in `waitpid` for it.
///
/// Started in its own session (so a terminal's signals don't reach it), with stdin from
/// /dev/null and stdout and stderr appended to a log file.
public final class ChildProcess: Sendable {
    public let pid: pid_t
    private struct ExitState {
        var status: ExitStatus?
        var nextToken = 0
        var waiters: [Int: CheckedContinuation<ExitStatus?, Never>] = [:]
    }
    private let exit = Mutex(ExitState())

    private init(pid: pid_t) {
        self.pid = pid
    }

    /// Starts `path` with `arguments` (not including argv[0]), under `filter` when one is given,
    /// and confined as `confinement` says (with a filter only).
    public static func spawn(
        _ path: String, arguments: [String], outputLog: String, environment: [String]? = nil, filter: SeccompFilter? = nil,
        confinement: QEMUConfinement? = nil
    ) throws(VMManagerError) -> ChildProcess {
        if let filter {
            return try spawn(path, arguments: arguments, outputLog: outputLog, environment: environment, under: filter, confinement: confinement)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        // Not close-on-exec: it is the child's stdout (and, below, its stderr).
        posix_spawn_file_actions_addopen(&actions, 1, outputLog, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Nothing else of ours leaks into the child (a shim's listening socket, say, which
        // would keep answering for a dead shim).
        skiff_spawn_addclosefrom(&actions, 3)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaultSignals = sigset_t()
        sigfillset(&defaultSignals)
        posix_spawnattr_setsigdefault(&attributes, &defaultSignals)
        var noMask = sigset_t()
        sigemptyset(&noMask)
        posix_spawnattr_setsigmask(&attributes, &noMask)
        posix_spawnattr_setflags(&attributes, Int16(posixSpawnSetsid | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envStrings = (environment ?? currentEnvironment()).map { strdup($0) } + [nil]
        defer { envStrings.forEach { free($0) } }

        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attributes, argv, envStrings)
        guard rc == 0 else {
            throw .startFailed("cannot start \(path): \(String(cString: strerror(rc)))")
        }
        let child = ChildProcess(pid: pid)
        child.startReaper()
        return child
    }

    private static func spawn(
        _ path: String, arguments: [String], outputLog: String, environment: [String]?, under filter: SeccompFilter,
        confinement: QEMUConfinement?
    ) throws(VMManagerError) -> ChildProcess {
        let output = open(outputLog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw .startFailed("cannot open \(outputLog): \(String(cString: strerror(errno)))") }
        defer { close(output) }
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envStrings = (environment ?? currentEnvironment()).map { strdup($0) } + [nil]
        defer { envStrings.forEach { free($0) } }
        let pid = filter.spawn(path, argv: argv, envp: envStrings, outputFD: output, confinement: confinement)
        guard pid > 0 else { throw .startFailed("cannot start \(path): \(String(cString: strerror(-pid)))") }
        let child = ChildProcess(pid: pid)
        child.startReaper()
        return child
    }

    /// The exit status, once the process has exited.
    public var exitStatus: ExitStatus? { exit.withLock { $0.status } }

    /// Waits for the process to exit.
    public func wait() async -> ExitStatus {
        // Without a timeout the answer is never nil.
        await wait(timeout: nil) ?? .signaled(0)
    }

    /// Waits for the process to exit, or for `timeout` to pass (then nil).
    public func wait(timeout: Duration?) async -> ExitStatus? {
        let token = exit.withLock { state in
            defer { state.nextToken += 1 }
            return state.nextToken
        }
        let timer = timeout.map { timeout in
            Task { [self] in
                try? await Task.sleep(for: timeout)
                exit.withLock { $0.waiters.removeValue(forKey: token) }?.resume(returning: nil)
            }
        }
        defer { timer?.cancel() }
        return await withCheckedContinuation { continuation in
            let status: ExitStatus? = exit.withLock { state in
                if let status = state.status { return status }
                state.waiters[token] = continuation
                return nil
            }
            if let status { continuation.resume(returning: status) }
        }
    }

    /// Sends `signal` unless the process has already been reaped (its pid may be reused).
    public func signal(_ signal: Int32) {
        exit.withLock { state in
            if state.status == nil { _ = kill(pid, signal) }
        }
    }

    private func startReaper() {
        let box = Unmanaged.passRetained(self)
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            let child = Unmanaged<ChildProcess>.fromOpaque(raw!).takeRetainedValue()
            child.reap()
            return nil
        }, box.toOpaque())
        if rc == 0 {
            pthread_detach(thread)
        } else {
            box.release()
        }
    }

    private func reap() {
        // Wait for the exit without reaping, so the pid stays ours until the status is
        // recorded under the lock `signal` takes: a signal never reaches a reused pid.
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) < 0, errno == EINTR {}
        let (result, waiters) = exit.withLock { state in
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0, errno == EINTR {}
            let result = ExitStatus(waitStatus: status)
            state.status = result
            defer { state.waiters.removeAll() }
            return (result, state.waiters)
        }
        for waiter in waiters.values { waiter.resume(returning: result) }
    }
}

private func currentEnvironment() -> [String] {
    var result: [String] = []
    var cursor = environ
    while let entry = cursor.pointee {
        result.append(String(cString: entry))
        cursor += 1
    }
    return result
}

/// glibc's POSIX_SPAWN_SETSID, which its headers expose only under _GNU_SOURCE.
private let posixSpawnSetsid: Int32 = 0x80
