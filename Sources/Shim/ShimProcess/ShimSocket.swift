import PodController
import SkiffSupport

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
