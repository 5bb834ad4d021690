import Glibc

/// Brings hot-added CPUs online. Without udev nobody else does: the kernel registers a CPU
/// that ACPI hot-plug added, offline, under /sys/devices/system/cpu/cpuN.
public struct CPUOnline: Sendable {
    private let root: String

    /// `root` is the sysfs CPU directory (another one in tests).
    public init(root: String = "/sys/devices/system/cpu") {
        self.root = root
    }

    /// Onlines every offline CPU, again until `wanted` are online or `timeout` passes, and
    /// returns how many are online.
    public func onlineAll(wanted: Int, timeout: Duration) async throws(AgentError) -> Int {
        let deadline = ContinuousClock.now + timeout
        while true {
            let online = try onlineOnce()
            if online >= wanted || ContinuousClock.now >= deadline { return online }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// One pass: writes 1 to each CPU whose `online` reads 0; counts the CPUs online after.
    /// A CPU without an `online` file (cpu0, usually) cannot go offline and counts as online.
    func onlineOnce() throws(AgentError) -> Int {
        guard let dir = opendir(root) else { throw .system("opendir \(root)", errno) }
        defer { closedir(dir) }
        var online = 0
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            guard name.hasPrefix("cpu"), name.count > 3, name.dropFirst(3).allSatisfy(\.isNumber) else { continue }
            let file = "\(root)/\(name)/online"
            guard let state = read(file) else { online += 1; continue }
            if state == "1" { online += 1; continue }
            if write(file, "1") { online += 1 }
        }
        return online
    }

    private func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 8)
        let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].prefix(while: { $0 != 0x0a }), as: UTF8.self)
    }

    private func write(_ path: String, _ value: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return value.withCString { Glibc.write(fd, $0, strlen($0)) } > 0
    }
}
