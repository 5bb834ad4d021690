import AgentAPI
import Glibc

/// The pod's NICs in the guest: found by MAC address in /sys/class/net, configured with the
/// guest's `ip` (busybox) as an argument vector. Addresses and routes are data from the host's
/// view of the pod's network namespace; none of it is shell text.
public struct NetworkConfig: Sendable {
    /// The `ip` program.
    public var ip: String
    public var sysClassNet: String

    public init(ip: String = "ip", sysClassNet: String = "/sys/class/net") {
        self.ip = ip
        self.sysClassNet = sysClassNet
    }

    /// The interface whose MAC address is `mac` (case-insensitive), waiting up to `timeout`
    /// for a hot-plugged NIC to show. NotFound after.
    func interface(mac: String, timeout: Duration) async throws(AgentError) -> String {
        let wanted = mac.lowercased()
        let deadline = ContinuousClock.now + timeout
        while true {
            if let dir = opendir(sysClassNet) {
                defer { closedir(dir) }
                while let entry = readdir(dir) {
                    let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
                    guard !name.hasPrefix(".") else { continue }
                    if readTextFile("\(sysClassNet)/\(name)/address")?.trimmingNewlines().lowercased() == wanted { return name }
                }
            }
            if ContinuousClock.now >= deadline { throw .notFound("no network interface with MAC address \(mac) in the guest") }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Configures the NIC the request names; its name.
    func configure(_ request: Skiff_Agent_V1_ConfigureInterfaceRequest, reaper: ExitReaper) async throws(AgentError) -> String {
        guard request.mac.split(separator: ":").count == 6 else { throw .invalidArgument("MAC address \(request.mac) is not aa:bb:cc:dd:ee:ff") }
        guard request.timeoutMs <= 60_000 else { throw .invalidArgument("timeout_ms \(request.timeoutMs) is above 60000") }
        for address in request.addresses where !Self.isCIDR(address) { throw .invalidArgument("address \(address) is not in CIDR notation") }
        for route in request.routes where route.destination != "default" && !Self.isCIDR(route.destination) {
            throw .invalidArgument("route destination \(route.destination) is not CIDR or default")
        }
        let name = try await interface(mac: request.mac, timeout: .milliseconds(Int(request.timeoutMs)))
        var link = ["link", "set", "dev", name]
        if request.mtu > 0 { link += ["mtu", String(request.mtu)] }
        try await run(link + ["up"], reaper: reaper)
        for address in request.addresses {
            try await run(["addr", "add", address, "dev", name], reaper: reaper, existingIsFine: true)
        }
        for route in request.routes {
            var arguments = ["route", "add", route.destination]
            if !route.gateway.isEmpty { arguments += ["via", route.gateway] }
            try await run(arguments + ["dev", name], reaper: reaper, existingIsFine: true)
        }
        return name
    }

    /// `a.b.c.d/n` or an IPv6 address with a prefix: digits, hex, dots and colons, one slash.
    static func isCIDR(_ text: String) -> Bool {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let prefix = Int(parts[1]), (0...128).contains(prefix), !parts[0].isEmpty else { return false }
        return parts[0].allSatisfy { $0.isHexDigit || $0 == "." || $0 == ":" }
    }

    /// Runs `ip ARGUMENTS`; FailedPrecondition with its stderr when it fails (unless what it
    /// says is that the address or route already exists).
    private func run(_ arguments: [String], reaper: ExitReaper, existingIsFine: Bool = false) async throws(AgentError) {
        let spawned = try ProcessSpawner.spawn(ProcessSpec(args: [ip] + arguments, stderr: true), reaper: reaper)
        let status = WaitStatus(raw: await reaper.waitStatus(of: spawned.pid))
        reaper.forget(spawned.pid)
        var message = ""
        if let fd = spawned.stderr {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 { message = String(decoding: buffer[0..<n], as: UTF8.self).trimmingNewlines() }
            close(fd)
        }
        if status.exitCode == 0 || (existingIsFine && message.contains("File exists")) { return }
        throw .failedPrecondition("ip \(arguments.joined(separator: " ")): \(message.isEmpty ? "exit \(status.exitCode)" : message)")
    }
}
