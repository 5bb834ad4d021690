import Glibc

extension ContainerCgroup {
    /// Freezes (`true`) or thaws the cgroup through `cgroup.freeze`, then waits until
    /// `cgroup.events` says `frozen 1` (or `0`). The kernel signals a change of that file to
    /// poll(2) as POLLPRI, so a thread sleeps in poll until the change or the timeout.
    /// Throws DeadlineExceeded when the state is not reached within `timeout`.
    public func setFrozen(_ frozen: Bool, timeout: Duration = .seconds(10)) async throws(AgentError) {
        try set("cgroup.freeze", frozen ? "1" : "0")
        let wanted = "frozen \(frozen ? 1 : 0)"
        let events = directory + "/cgroup.events"
        let milliseconds = Int(timeout.components.seconds * 1000)
        let reached = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            startThread { continuation.resume(returning: Self.waitForLine(wanted, in: events, timeoutMs: milliseconds)) }
        }
        guard reached else {
            throw .deadlineExceeded("\(directory) did not reach \"\(wanted)\" within \(timeout)")
        }
    }

    /// Reads `path` until a line equals `line`, sleeping in poll(POLLPRI) between reads.
    static func waitForLine(_ line: String, in path: String, timeoutMs: Int) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let end = Int(deadline.tv_sec) * 1000 + Int(deadline.tv_nsec) / 1_000_000 + timeoutMs
        var buffer = [UInt8](repeating: 0, count: 512)
        while true {
            // Reading from the start re-arms the notification (kernfs compares event counts).
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
            if n > 0, String(decoding: buffer[0..<n], as: UTF8.self).split(separator: "\n").contains(Substring(line)) {
                return true
            }
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            let left = end - (Int(now.tv_sec) * 1000 + Int(now.tv_nsec) / 1_000_000)
            if left <= 0 { return false }
            var poller = pollfd(fd: fd, events: Int16(POLLPRI), revents: 0)
            if poll(&poller, 1, Int32(left)) < 0, errno != EINTR { return false }
        }
    }
}
