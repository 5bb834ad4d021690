import Glibc

/// The host's kernel samepage merging (KSM), which merges identical pages of memory marked
/// mergeable, such as the guest RAM of VMs with `VMDocument.memoryMerging`
/// (Documentation/admin-guide/mm/ksm.rst: /sys/kernel/mm/ksm/run, 0 stopped, 1 running).
public enum HostKSM {
    public static let runFile = "/sys/kernel/mm/ksm/run"

    /// What `ensureRunning` found and did.
    public enum Outcome: Sendable, Equatable {
        case alreadyRunning
        case started
        /// KSM is not there (a kernel without it) or cannot be started (not root, or run is 2:
        /// an administrator unmerged everything); the reason.
        case unavailable(String)
    }

    /// Starts KSM when it is stopped. Never stops it: other VMs, and the administrator, may
    /// rely on it; the scan rate (pages_to_scan, sleep_millisecs) stays the administrator's.
    public static func ensureRunning(runFile: String = runFile) -> Outcome {
        let fd = open(runFile, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return .unavailable("\(runFile): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var byte: UInt8 = 0
        guard read(fd, &byte, 1) == 1 else { return .unavailable("\(runFile): cannot read") }
        switch byte {
        case UInt8(ascii: "1"): return .alreadyRunning
        case UInt8(ascii: "0"):
            var one = UInt8(ascii: "1")
            guard pwrite(fd, &one, 1, 0) == 1 else { return .unavailable("\(runFile): \(String(cString: strerror(errno)))") }
            return .started
        default:
            return .unavailable("\(runFile) is \(Character(UnicodeScalar(byte))): left as the administrator set it")
        }
    }
}
