import CSkiffSys
import FoundationEssentials
import Glibc
import SkiffSupport

/// The pod's network namespace through Debian's iproute2 (`ip -j`, `tc`), run inside it by
/// util-linux's `nsenter --net=PATH`, and the VM's NICs through its host half. Every value
/// is an argument; nothing is shell text.
struct LinuxNetworkHost: NetworkHost {
    let vm: any VMHost

    func interfaces(in netns: String) async throws -> [PodInterface] {
        let links = try decode([IPAddressEntry].self, try await NetnsCommand.run(netns, ["ip", "-j", "addr", "show"]))
        let routes = try decode([IPRouteEntry].self, try await NetnsCommand.run(netns, ["ip", "-j", "route", "show"]))
        return links.filter { $0.link_type != "loopback" && !$0.ifname.hasPrefix("skiff-tap") && $0.address != nil }.map { link in
            PodInterface(
                name: link.ifname, mac: link.address ?? "", mtu: link.mtu ?? 1500,
                addresses: (link.addr_info ?? []).filter { $0.scope == nil || $0.scope == "global" }
                    .compactMap { info in info.local.map { "\($0)/\(info.prefixlen ?? 32)" } },
                routes: routes.filter { $0.dev == link.ifname }.map { PodRoute(destination: $0.dst, gateway: $0.gateway ?? "") })
        }
    }

    func openTap(in netns: String, name: String) throws -> Int32 {
        let fd = skiff_open_tap_in_netns(netns, name)
        guard fd >= 0 else { throw VMControllerError.operationFailed("tap \(name) in \(netns): \(String(cString: strerror(-fd)))") }
        return fd
    }

    func mirror(in netns: String, veth: String, tap: String, mac: String, mtu: Int) async throws {
        try await NetnsCommand.run(netns, ["ip", "link", "set", "dev", tap, "address", mac, "mtu", String(mtu), "up"])
        for (from, to) in [(veth, tap), (tap, veth)] {
            try await NetnsCommand.run(netns, ["tc", "qdisc", "replace", "dev", from, "ingress"])
            // u32 matching zero bits of the first byte: every frame (cls_matchall may be absent).
            try await NetnsCommand.run(netns, ["tc", "filter", "replace", "dev", from, "parent", "ffff:", "protocol", "all",
                                               "u32", "match", "u8", "0", "0", "action", "mirred", "egress", "redirect", "dev", to])
        }
    }

    func unmirror(in netns: String, veth: String) async throws {
        try await NetnsCommand.removeIngress(netns: netns, device: veth)
    }

    func addNIC(id: String, tapFD: Int32, mac: String) async throws {
        try await vm.addNetworkInterface(id: id, tapFD: tapFD, mac: mac)
    }

    func removeNIC(id: String) async throws {
        try await vm.removeNetworkInterface(id: id)
    }

    private func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(text.utf8))
        } catch {
            throw VMControllerError.operationFailed("iproute2's JSON did not decode (\(error)): \(text.prefix(300))")
        }
    }

    /// `ip -j addr show`, the fields used.
    struct IPAddressEntry: Decodable {
        var ifname: String
        var address: String?
        var mtu: Int?
        var link_type: String?
        var addr_info: [Info]?
        struct Info: Decodable {
            var local: String?
            var prefixlen: Int?
            var scope: String?
        }
    }

    /// `ip -j route show`, the fields used.
    struct IPRouteEntry: Decodable {
        var dst: String
        var gateway: String?
        var dev: String?
    }
}

/// A command run in a network namespace (`nsenter --net=PATH -- PROGRAM ARGS`), spawned
/// directly through `HostCommand` (no Foundation `Process`, whose run loop wants a loopback socket, which the pod's
/// namespace, where a CRI containerd and so the shim may run, need not have up).
enum NetnsCommand {
    /// Its output; throws `.operationFailed` with it when the command fails.
    @discardableResult
    static func run(_ netns: String, _ arguments: [String]) async throws(VMControllerError) -> String {
        let (status, output) = await execute(netns, arguments)
        guard status == 0 else {
            throw .operationFailed("\(arguments.joined(separator: " ")) in \(netns): \(output.isEmpty ? "exit \(status)" : output)")
        }
        return output
    }

    /// Removes `device`'s ingress qdisc (and so its filters). A namespace, device or qdisc
    /// already gone is done.
    static func removeIngress(netns: String, device: String) async throws(VMControllerError) {
        guard access(netns, F_OK) == 0 else { return }
        let (status, output) = await execute(netns, ["tc", "qdisc", "del", "dev", device, "ingress"])
        let gone = ["Cannot find device", "No such file", "Invalid handle", "Cannot delete qdisc with handle of zero", "does not exist"]
        guard status == 0 || gone.contains(where: { output.contains($0) }) else {
            throw .operationFailed("tc qdisc del dev \(device) ingress in \(netns): \(output)")
        }
    }

    /// Runs `program arguments` in `netns` to the end: its status and its output (stdout and
    /// stderr together). The program is iproute2's, found in the usual system directories.
    static func execute(_ netns: String, _ arguments: [String]) async -> (Int32, String) {
        guard let program = arguments.first, let path = HostCommand.locate(program), let nsenter = HostCommand.locate("nsenter") else {
            return (127, "\(arguments.first ?? "") or nsenter not found")
        }
        let (status, output) = await HostCommand.run(nsenter, ["--net=\(netns)", "--", path] + arguments.dropFirst())
        return (status, output.trimmed())
    }
}
