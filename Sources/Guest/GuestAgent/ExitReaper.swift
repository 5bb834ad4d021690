import CSkiffSys
import Glibc
import Synchronization

/// Collects the exits of the agent's children.
///
/// As PID 1 (`.allChildren`) one thread reaps every child, so orphans re-parented to init do
/// not pile up as zombies. The exits of orphans are kept a while (the last `orphanLimit`), so
/// a process that came to the agent by re-parenting, such as a container's init once
/// `crun create` has exited, can be `adopt`ed even if it ended first. Elsewhere
/// (`.ownChildren`, for tests on a host) a thread per child waits for that pid only, leaving
/// the rest of the host process's children alone.
///
/// `spawn` holds the table's lock while the child is created and registered, so an exit the
/// reaper sees is never mistaken for an orphan's.
public final class ExitReaper: Sendable {
    public enum Mode: Sendable { case allChildren, ownChildren }

    private enum Entry {
        case running([CheckedContinuation<Int32, Never>])
        case exited(Int32)
    }

    /// Where the orphan exits stand when a launcher starts: `adopt` takes only later ones.
    public struct Mark: Sendable { let serial: UInt64 }

    private struct State {
        var entries: [pid_t: Entry] = [:]
        /// Exits of processes nobody tracked, with the order they came in.
        var orphans: [pid_t: (status: Int32, serial: UInt64)] = [:]
        var serial: UInt64 = 0
    }

    public let mode: Mode
    static let orphanLimit = 1024
    private let state = Mutex<State>(State())
    /// Wakes the PID 1 reaper when it had no children and a new one appears.
    private let wakeFDs: (read: Int32, write: Int32)

    public init(mode: Mode) {
        self.mode = mode
        var fds: [Int32] = [-1, -1]
        if mode == .allChildren, skiff_pipe_cloexec(&fds) == 0 {
            wakeFDs = (fds[0], fds[1])
            // A full wake pipe just means the reaper is already awake.
            _ = fcntl(fds[1], F_SETFL, O_NONBLOCK)
            startThread { [self] in reapAll() }
        } else {
            wakeFDs = (-1, -1)
        }
    }

    /// Runs `body` (which starts a child and returns its pid) and tracks the child.
    public func spawn(_ body: () throws(AgentError) -> pid_t) throws(AgentError) -> pid_t {
        let pid = try state.withLock { (state) throws(AgentError) -> pid_t in
            let pid = try body()
            state.entries[pid] = .running([])
            return pid
        }
        switch mode {
        case .allChildren:
            var byte: UInt8 = 1
            _ = write(wakeFDs.write, &byte, 1)
        case .ownChildren:
            startThread { [self] in
                var status: Int32 = 0
                while waitpid(pid, &status, 0) < 0, errno == EINTR {}
                record(pid: pid, status: status)
            }
        }
        return pid
    }

    /// Marks the present: orphans that exit from now on may be adopted.
    public func mark() -> Mark {
        state.withLock { Mark(serial: $0.serial) }
    }

    /// Tracks `pid`, a process that became the agent's by re-parenting after `since` was
    /// taken: its exit is the orphan exit recorded after the mark, if it came already, or the
    /// next one. Only as PID 1 do orphans come to the agent.
    public func adopt(_ pid: pid_t, since: Mark) {
        state.withLock { state in
            if case .running = state.entries[pid] { return }
            if let orphan = state.orphans.removeValue(forKey: pid), orphan.serial > since.serial {
                state.entries[pid] = .exited(orphan.status)
            } else {
                state.entries[pid] = .running([])
            }
        }
    }

    /// The raw wait status of a tracked child, once it exits.
    public func waitStatus(of pid: pid_t) async -> Int32 {
        await withCheckedContinuation { continuation in
            let done: Int32? = state.withLock { state in
                switch state.entries[pid] {
                case let .exited(status): return status
                case var .running(waiters):
                    waiters.append(continuation)
                    state.entries[pid] = .running(waiters)
                    return nil
                case nil: return 0x7f00  // untracked: report "killed by signal 127" rather than hang
                }
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    /// Stops tracking an exited child.
    public func forget(_ pid: pid_t) {
        state.withLock { state in
            if case .exited = state.entries[pid] { state.entries[pid] = nil }
        }
    }

    private func record(pid: pid_t, status: Int32) {
        let waiters: [CheckedContinuation<Int32, Never>] = state.withLock { state in
            guard case let .running(waiters) = state.entries[pid] else {
                state.serial += 1
                state.orphans[pid] = (status, state.serial)
                if state.orphans.count > Self.orphanLimit,
                   let oldest = state.orphans.min(by: { $0.value.serial < $1.value.serial }) {
                    state.orphans[oldest.key] = nil
                }
                return []
            }
            state.entries[pid] = .exited(status)
            return waiters
        }
        for waiter in waiters { waiter.resume(returning: status) }
    }

    private func reapAll() -> Never {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, 0)
            if pid > 0 {
                record(pid: pid, status: status)
            } else if errno == ECHILD {
                var byte: UInt8 = 0
                _ = read(wakeFDs.read, &byte, 1)
            }
        }
    }
}

/// Decodes a raw wait status.
public struct WaitStatus: Sendable, Equatable {
    public var raw: Int32
    public init(raw: Int32) { self.raw = raw }
    /// The signal that killed the process, or 0 when it exited.
    public var signal: Int32 { raw & 0x7f == 0 ? 0 : raw & 0x7f }
    /// The exit code, or 128 + the signal.
    public var exitCode: Int32 { signal == 0 ? (raw >> 8) & 0xff : 128 + signal }
}

/// Runs `body` on a new detached thread.
public func startThread(_ body: @escaping @Sendable () -> Void) {
    final class Box: @unchecked Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let box = Unmanaged.passRetained(Box(body))
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { raw in
        let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
        box.body()
        return nil
    }, box.toOpaque())
    if rc == 0 { pthread_detach(thread) } else { box.release() }
}
