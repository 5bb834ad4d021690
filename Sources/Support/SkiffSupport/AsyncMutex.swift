import Synchronization

/// Mutual exclusion for async code: `withLock` runs its body with no other body of the same
/// mutex in flight, across every await inside it. Waiters are served first come, first
/// served. It is not reentrant: a body must not take the same mutex again.
///
/// This is the one discipline the controllers use for state changes that span awaits (the
/// pod's VM lifetime, the VM controller's transitions, the Plan9 share table). The body runs
/// in the caller's isolation (`#isolation`), so an actor's state stays the actor's own.
public final class AsyncMutex: Sendable {
    private struct State {
        var locked = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())

    public init() {}

    /// Runs `body` holding the mutex; waits (suspended, not spinning) while another holds it.
    public func withLock<T, E: Error>(isolation: isolated (any Actor)? = #isolation,
                                      _ body: () async throws(E) -> T) async throws(E) -> T {
        await lock()
        defer { unlock() }
        return try await body()
    }

    /// Whether a body holds the mutex now (for diagnostics and tests).
    public var isLocked: Bool { state.withLock { $0.locked } }

    private func lock() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let acquired = state.withLock { state -> Bool in
                if state.locked {
                    state.waiters.append(continuation)
                    return false
                }
                state.locked = true
                return true
            }
            if acquired { continuation.resume() }
        }
    }

    private func unlock() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.locked = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}
