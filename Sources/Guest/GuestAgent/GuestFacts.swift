import AgentAPI
import Glibc

/// Reads what GuestInfo reports from uname, sysinfo and /proc.
public enum GuestFacts {
    static func read() -> Skiff_Agent_V1_GuestInfoResponse {
        var info = Skiff_Agent_V1_GuestInfoResponse()
        var names = utsname()
        if uname(&names) == 0 {
            info.kernelRelease = field(&names.release)
            info.machine = field(&names.machine)
            info.kernelVersion = field(&names.version)
        }
        info.cpus = UInt32(max(0, sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        if let meminfo = readTextFile("/proc/meminfo") {
            for line in meminfo.split(separator: "\n") {
                let parts = line.split(separator: " ", omittingEmptySubsequences: true)
                guard parts.count >= 2, let kib = UInt64(parts[1]) else { continue }
                if parts[0] == "MemTotal:" { info.memoryTotalBytes = kib * 1024 }
                if parts[0] == "MemAvailable:" { info.memoryAvailableBytes = kib * 1024 }
            }
        }
        var now = timespec()
        clock_gettime(CLOCK_BOOTTIME, &now)
        info.uptimeNs = UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
        return info
    }

    private static func field<T>(_ tuple: inout T) -> String {
        withUnsafeBytes(of: &tuple) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }
}

/// The whole of a (small) text file, or nil when it cannot be read.
extension GuestFacts {
    /// The kernel's command line (/proc/cmdline), split at spaces.
    public static func kernelArguments() -> [String] {
        (readTextFile("/proc/cmdline") ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
    }
}

func readTextFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16384)
    while true {
        let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        if n < 0, errno == EINTR { continue }
        if n <= 0 { break }
        bytes += chunk[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// The agent's threads as the kernel sees them: name, state, and the kernel stack where the
/// kernel exposes it.
enum ThreadDump {
    static func current() -> String {
        var text = "threads:\n"
        guard let dir = opendir("/proc/self/task") else { return text + "  (unavailable)\n" }
        defer { closedir(dir) }
        var tids: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name.first?.isNumber == true { tids.append(name) }
        }
        for tid in tids.sorted(by: { (Int($0) ?? 0) < (Int($1) ?? 0) }) {
            let comm = readTextFile("/proc/self/task/\(tid)/comm")?.trimmingNewlines() ?? "?"
            let wchan = readTextFile("/proc/self/task/\(tid)/wchan")?.trimmingNewlines() ?? "?"
            let state = readTextFile("/proc/self/task/\(tid)/stat").flatMap { stat -> String? in
                guard let close = stat.lastIndex(of: ")") else { return nil }
                return stat[stat.index(after: close)...].split(separator: " ").first.map(String.init)
            } ?? "?"
            text += "  thread \(tid) \(comm) state \(state) wchan \(wchan)\n"
            if let stack = readTextFile("/proc/self/task/\(tid)/stack"), !stack.isEmpty {
                for line in stack.split(separator: "\n") { text += "    \(line)\n" }
            }
        }
        return text
    }
}

extension String {
    func trimmingNewlines() -> String {
        var s = Substring(self)
        while s.last == "\n" { s = s.dropLast() }
        return String(s)
    }
}
