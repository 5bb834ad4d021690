import PodController
import SkiffSupport
import Glibc

/// Where a pod's shim listens, as containerd derives it: a socket under /run/containerd/s named
/// by the SHA-256 of `ADDRESS/NAMESPACE/GROUP`, so every container of one group (one pod)
/// finds the same shim.
public enum ShimSocket {
    public static let directory = "/run/containerd/s"

    /// `unix:///run/containerd/s/<hex sha256>`.
    public static func address(containerdAddress: String, namespace: String, group: String, directory: String = directory) -> String {
        "unix://" + path(containerdAddress: containerdAddress, namespace: namespace, group: group, directory: directory)
    }

    /// The socket's file path.
    public static func path(containerdAddress: String, namespace: String, group: String, directory: String = directory) -> String {
        directory + "/" + SHA256.hex(Array("\(containerdAddress)/\(namespace)/\(group)".utf8))
    }

    /// The group of a container: its sandbox annotation, else its own id (the pod's rule).
    public static func group(id: String, annotations: [String: String]) -> String {
        PodIdentity.group(id: id, annotations: annotations)
    }

    /// The path a listening Unix socket descriptor is bound to (getsockname), or nil.
    public static func boundPath(of fd: Int32) -> String? {
        var address = sockaddr_un()
        var length = socklen_t(MemoryLayout<sockaddr_un>.size)
        let rc = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard rc == 0, address.sun_family == sa_family_t(AF_UNIX) else { return nil }
        let path = withUnsafeBytes(of: address.sun_path) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        return path.hasPrefix("/") ? path : nil
    }

    /// The path of an address (`unix://` prefix removed).
    public static func socketPath(of address: String) -> String {
        address.hasPrefix("unix://") ? String(address.dropFirst(7)) : address
    }
}

/// What `start` prints. containerd 1.6 reads the address alone; 1.7 and 2.x also accept a
/// JSON bootstrap document naming the protocol, which a shim writes when asked for a version
/// of the bootstrap protocol (containerd 2.x passes it in `bootstrap.json`'s parameters).
public enum ShimBootstrap {
    public static func output(address: String, protocolVersion: Int?) -> String {
        guard let version = protocolVersion, version >= 2 else { return address }
        return "{\"version\":\(version),\"address\":\"\(escape(address))\",\"protocol\":\"ttrpc\"}"
    }

    private static func escape(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }
}
