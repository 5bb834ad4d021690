import AgentAPI
import Glibc
import SwiftProtobuf

/// One container's cgroup (v2) in the guest, found from its init's `/proc/PID/cgroup`, and
/// the operations containerd's task API needs of it: the processes, signals to all of them,
/// freezing, figures and limits. The file names and formats are the kernel's
/// (Documentation/admin-guide/cgroup-v2.rst). Paths come from the kernel, never from the
/// host, and every value written is a number the agent formats.
public struct ContainerCgroup: Sendable, Equatable {
    /// The cgroup's directory, `/sys/fs/cgroup/...`.
    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    /// The cgroup of process `pid` (its unified-hierarchy line `0::/PATH`), below `root`.
    public static func of(pid: pid_t, root: String = "/sys/fs/cgroup") -> ContainerCgroup? {
        guard let text = readTextFile("/proc/\(pid)/cgroup") else { return nil }
        return parse(procCgroup: text, root: root)
    }

    /// The v2 line of a `/proc/PID/cgroup` text, as a cgroup below `root`.
    public static func parse(procCgroup text: String, root: String = "/sys/fs/cgroup") -> ContainerCgroup? {
        for line in text.split(separator: "\n") where line.hasPrefix("0::") {
            let path = line.dropFirst(3)
            return ContainerCgroup(directory: path == "/" ? root : root + path)
        }
        return nil
    }

    /// Whether the cgroup still exists.
    public var exists: Bool { access(directory + "/cgroup.procs", F_OK) == 0 }

    /// Its processes, in the kernel's order; empty once the cgroup is gone.
    public func pids() -> [pid_t] {
        (readTextFile(directory + "/cgroup.procs") ?? "").split(separator: "\n").compactMap { pid_t($0) }
    }

    /// Sends `signal` to every process. SIGKILL goes through `cgroup.kill`, which also reaches
    /// processes forked meanwhile; other signals go to each process listed, and a process that
    /// ended in between is no failure.
    public func signalAll(_ signal: Int32) throws(AgentError) {
        guard exists else { return }
        if signal == SIGKILL, write("cgroup.kill", "1") == nil { return }
        for pid in pids() where kill(pid, signal) != 0 && errno != ESRCH {
            throw .errno("signal \(signal) to process \(pid) of \(directory)")
        }
    }

    /// Writes `value` to the cgroup's file `name`; nil on success, else errno.
    @discardableResult
    func write(_ name: String, _ value: String) -> Int32? {
        let fd = open(directory + "/" + name, O_WRONLY | O_TRUNC | O_CLOEXEC)
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        let n = value.withCString { Glibc.write(fd, $0, strlen($0)) }
        return n < 0 ? errno : nil
    }

    func set(_ name: String, _ value: String) throws(AgentError) {
        if let code = write(name, value) { throw .system("write \(value) to \(directory)/\(name)", code) }
    }

    /// `name value` lines (cpu.stat, memory.stat, memory.events) as a table.
    static func keyedValues(_ text: String) -> [Substring: UInt64] {
        var values: [Substring: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 2, let value = UInt64(fields[1]) { values[fields[0]] = value }
        }
        return values
    }

    /// A single-value file: its number, 0 for `max`, nil if absent.
    func number(_ name: String) -> UInt64? {
        guard let text = readTextFile(directory + "/" + name)?.trimmingNewlines() else { return nil }
        return text == "max" ? 0 : UInt64(text)
    }

    /// How many times the OOM killer ended a process of this cgroup (memory.events `oom_kill`).
    public func oomKills() -> UInt64 {
        Self.keyedValues(readTextFile(directory + "/memory.events") ?? "")["oom_kill"] ?? 0
    }

    /// Its figures, as the agent API carries them.
    public func stats() -> Skiff_Agent_V1_ContainerStatsResponse {
        let memory = Self.keyedValues(readTextFile(directory + "/memory.stat") ?? "")
        let events = Self.keyedValues(readTextFile(directory + "/memory.events") ?? "")
        let cpu = Self.keyedValues(readTextFile(directory + "/cpu.stat") ?? "")
        return .with {
            $0.memoryUsageBytes = number("memory.current") ?? 0
            $0.memoryLimitBytes = number("memory.max") ?? 0
            $0.memoryAnon = memory["anon"] ?? 0
            $0.memoryFile = memory["file"] ?? 0
            $0.memoryKernelStack = memory["kernel_stack"] ?? 0
            $0.memorySlab = memory["slab"] ?? 0
            $0.memorySock = memory["sock"] ?? 0
            $0.memoryShmem = memory["shmem"] ?? 0
            $0.memoryFileMapped = memory["file_mapped"] ?? 0
            $0.memoryFileDirty = memory["file_dirty"] ?? 0
            $0.memoryPgfault = memory["pgfault"] ?? 0
            $0.memoryPgmajfault = memory["pgmajfault"] ?? 0
            $0.memoryOom = events["oom"] ?? 0
            $0.memoryOomKill = events["oom_kill"] ?? 0
            $0.cpuUsageUsec = cpu["usage_usec"] ?? 0
            $0.cpuUserUsec = cpu["user_usec"] ?? 0
            $0.cpuSystemUsec = cpu["system_usec"] ?? 0
            $0.cpuNrPeriods = cpu["nr_periods"] ?? 0
            $0.cpuNrThrottled = cpu["nr_throttled"] ?? 0
            $0.cpuThrottledUsec = cpu["throttled_usec"] ?? 0
            $0.pidsCurrent = number("pids.current") ?? 0
            $0.pidsLimit = number("pids.max") ?? 0
        }
    }

    /// Writes the limits the request sets (0 or less: no limit).
    public func update(_ request: Skiff_Agent_V1_UpdateContainerRequest) throws(AgentError) {
        func limit(_ value: Int64) -> String { value > 0 ? String(value) : "max" }
        if request.hasMemoryLimitBytes { try set("memory.max", limit(request.memoryLimitBytes)) }
        if request.hasPidsLimit { try set("pids.max", limit(request.pidsLimit)) }
        if request.hasCpuQuotaUsec || request.hasCpuPeriodUsec {
            // cpu.max is "QUOTA PERIOD"; keep the half the request leaves out.
            let current = (readTextFile(directory + "/cpu.max") ?? "max 100000").split(separator: " ")
            let quota = request.hasCpuQuotaUsec ? limit(request.cpuQuotaUsec) : String(current.first ?? "max")
            let period = request.hasCpuPeriodUsec && request.cpuPeriodUsec > 0
                ? String(request.cpuPeriodUsec) : String(current.dropFirst().first?.trimmingNewlinesSubstring() ?? "100000")
            try set("cpu.max", "\(quota) \(period)")
        }
    }
}

extension Substring {
    func trimmingNewlinesSubstring() -> Substring {
        var s = self
        while s.last == "\n" { s = s.dropLast() }
        return s
    }
}
