import FoundationEssentials
import Glibc

/// What the host pays for one VM: QEMU's resident memory and CPU time.
public struct VMHostStats: Sendable, Equatable {
    public var residentBytes: Int
    /// The resident memory that is this VM's alone (RssAnon: guest RAM, QEMU's heap and TCG's
    /// code buffer). The rest is file pages (QEMU's libraries, the kernel and initramfs it
    /// read), which every VM on the host shares through the page cache.
    public var privateBytes: Int
    public var cpuTime: Duration

    public init(residentBytes: Int, privateBytes: Int = 0, cpuTime: Duration) {
        self.residentBytes = residentBytes
        self.privateBytes = privateBytes
        self.cpuTime = cpuTime
    }
}

extension QEMUVirtualMachine {
    /// Reads QEMU's RSS from /proc/PID/status and its user+system time from /proc/PID/stat.
    public func hostStats() throws(VMManagerError) -> VMHostStats {
        guard let pid, exitStatus == nil else { throw .notRunning("VM \(document.id) is not running") }
        return try VMHostStats(pid: pid)
    }
}

extension VMHostStats {
    init(pid: pid_t) throws(VMManagerError) {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        else { throw .notRunning("process \(pid) is gone") }
        func kibibytes(_ key: String) -> Int {
            for line in status.split(separator: "\n") where line.hasPrefix(key) {
                return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
            }
            return 0
        }
        let rssKiB = kibibytes("VmRSS:")
        let anonKiB = kibibytes("RssAnon:")
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th fields.
        guard let close = stat.lastIndex(of: ")") else { throw .notRunning("process \(pid): unreadable stat") }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        let ticks = sysconf(Int32(_SC_CLK_TCK))
        let utime = fields.count > 12 ? Int(fields[11]) ?? 0 : 0
        let stime = fields.count > 12 ? Int(fields[12]) ?? 0 : 0
        let total = utime + stime
        self.init(residentBytes: rssKiB * 1024, privateBytes: anonKiB * 1024,
                  cpuTime: .milliseconds(ticks > 0 ? total * 1000 / ticks : 0))
    }
}
