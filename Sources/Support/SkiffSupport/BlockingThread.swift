import Glibc

/// Blocking work (system calls that wait) run on a thread of its own, so it never holds a
/// thread of Swift's concurrency pool.
public enum BlockingThread {
    /// Starts `body` on a new detached POSIX thread. False when no thread can be made
    /// (pthread_create fails: EAGAIN at the thread limit); `body` then never runs.
    @discardableResult
    public static func start(_ body: @escaping @Sendable () -> Void) -> Bool {
        let job = Unmanaged.passRetained(Job(body))
        var thread = pthread_t()
        guard pthread_create(&thread, nil, { raw in
            Unmanaged<Job>.fromOpaque(raw!).takeRetainedValue().work()
            return nil
        }, job.toOpaque()) == 0 else {
            job.release()
            return false
        }
        pthread_detach(thread)
        return true
    }

    /// Runs `body` on a thread of its own and returns what it returned; `fallback` when no
    /// thread can be made.
    public static func run<T: Sendable>(_ body: @escaping @Sendable () -> T, fallback: @autoclosure @Sendable () -> T) async -> T {
        await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
            if !start({ continuation.resume(returning: body()) }) { continuation.resume(returning: fallback()) }
        }
    }

    private final class Job: Sendable {
        let work: @Sendable () -> Void
        init(_ work: @escaping @Sendable () -> Void) { self.work = work }
    }
}
