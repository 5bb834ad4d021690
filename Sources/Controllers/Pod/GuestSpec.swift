import FoundationEssentials
import Glibc
import SkiffSupport

/// containerd's OCI spec as crun must see it inside the VM, made by one pure function
/// (`make`), and the spec's bind mounts that have to be shared into the VM first.
enum GuestSpec {
    /// The spec file Skiff writes beside containerd's config.json in the bundle.
    static let fileName = "skiff-config.json"

    /// Reads and decodes containerd's spec (config.json). InvalidArgument if it is missing, not
    /// a spec, or breaks a rule of `OCISpecChecks`.
    static func read(_ path: String) throws(SkiffError) -> OCISpec {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .invalidArgument("cannot read the OCI spec at \(path)")
        }
        let spec: OCISpec
        do { spec = try JSONDecoder().decode(OCISpec.self, from: data) } catch {
            throw .invalidArgument("the OCI spec at \(path) does not decode: \(error)", cause: error)
        }
        try OCISpecChecks.check(spec)
        return spec
    }

    /// A bind mount of the spec whose source is a host path: it must be shared into the VM.
    struct BindMount: Equatable {
        var index: Int
        var source: String
        var readOnly: Bool
    }

    /// The spec's bind mounts (type `bind`, or a `bind`/`rbind` option) of host paths, with the
    /// index of each in `mounts`. A source that does not exist is refused, as runc would.
    static func bindMounts(of spec: OCISpec) throws(SkiffError) -> [BindMount] {
        var binds: [BindMount] = []
        for (index, mount) in (spec.mounts ?? []).enumerated() {
            let options = mount.options ?? []
            guard mount.type == "bind" || options.contains("bind") || options.contains("rbind") else { continue }
            guard let source = mount.source, source.hasPrefix("/") else {
                throw .invalidArgument("bind mount \(index) needs an absolute source")
            }
            guard access(source, F_OK) == 0 else { throw .invalidArgument("bind mount source \(source) does not exist") }
            binds.append(BindMount(index: index, source: source, readOnly: options.contains("ro")))
        }
        return binds
    }

    /// containerd's spec as crun must see it inside the VM, and what was left out (for the log):
    /// - bind mounts name their sources' guest paths (`mountSources`, by mount index);
    /// - the guest has only the unified cgroup hierarchy, so a v1 `cgroup` mount becomes the
    ///   `cgroup2` one a v2 host's spec would carry, and the container gets a cgroup namespace
    ///   as containerd gives it on such a host;
    /// - a namespace to join by path is kept only when the path is `/proc/PID/ns/...` of a
    ///   container of this pod (the pids containerd knows are the guest's, so the path holds
    ///   there); any other path does not exist in the VM. A network namespace path names the
    ///   pod's network on the host, which the network controller has made the VM's own: the
    ///   container stays in the VM's network namespace (where the NICs are). Any other type
    ///   gets a namespace of its own, which the pod's later containers join through its /proc
    ///   path;
    /// - AppArmor and SELinux labels name host policy the guest does not have: the VM is the
    ///   pod's boundary;
    /// - the root is `root`: the bundle's `rootfs` (the guest sees the bundle through its
    ///   share), or the guest path of a root on block devices.
    /// The terminal stays as asked: crun makes it and hands it to the agent.
    static func make(_ spec: OCISpec, mountSources: [Int: String], podPids: Set<UInt32>, root: String = "rootfs") -> (spec: OCISpec, dropped: [String]) {
        var spec = spec
        var dropped: [String] = []
        if let profile = spec.process?.apparmorProfile { dropped.append("process.apparmorProfile \(profile)") }
        if let label = spec.process?.selinuxLabel { dropped.append("process.selinuxLabel \(label)") }
        spec.process?.apparmorProfile = nil
        spec.process?.selinuxLabel = nil
        if var mounts = spec.mounts {
            for (index, source) in mountSources where index < mounts.count { mounts[index].source = source }
            for index in mounts.indices where mounts[index].type == "cgroup" {
                mounts[index].type = "cgroup2"
                mounts[index].source = "cgroup2"
            }
            spec.mounts = mounts
        }
        if var linux = spec.linux {
            var namespaces = linux.namespaces ?? []
            for index in namespaces.indices.reversed() {
                guard let path = namespaces[index].path else { continue }
                if let pid = procNamespacePid(path), podPids.contains(pid) { continue }
                if namespaces[index].type == "network" {
                    namespaces.remove(at: index)
                    dropped.append("network namespace path \(path) (the pod's network: the VM's own namespace)")
                } else {
                    namespaces[index].path = nil
                    dropped.append("\(namespaces[index].type ?? "?") namespace path \(path) (not in the VM: a new one)")
                }
            }
            if !namespaces.contains(where: { $0.type == "cgroup" }) { namespaces.append(OCISpec.Namespace(type: "cgroup")) }
            linux.namespaces = namespaces
            if let label = linux.mountLabel { dropped.append("linux.mountLabel \(label)") }
            linux.mountLabel = nil
            spec.linux = linux
        }
        // As runc: a negative pids limit is no limit (crun would refuse it).
        if let limit = spec.linux?.resources?.pids?.limit, limit < 0 { spec.linux?.resources?.pids = nil }
        let rootPath = root
        var root = spec.root ?? OCISpec.Root()
        root.path = rootPath
        root.readonly = root.readonly ?? false
        spec.root = root
        return (spec, dropped)
    }

    /// Encodes `spec` and writes it to `path`.
    static func write(_ spec: OCISpec, to path: String) throws(SkiffError) {
        let data: Data
        do { data = try JSONEncoder().encode(spec) } catch { throw .internalError("cannot encode the guest spec", cause: error) }
        guard FileManager.default.createFile(atPath: path, contents: data) else {
            throw .internalError("cannot write the guest spec to \(path)")
        }
    }

    /// The network namespace on the host the container asks to join, when it names one that
    /// is not a container's of this pod: the pod's network. InvalidArgument for a spec with no
    /// network namespace at all (the host's network, which a VM cannot give its containers).
    static func podNetwork(of spec: OCISpec, podPids: Set<UInt32>) throws(SkiffError) -> String? {
        guard let network = spec.linux?.namespaces?.first(where: { $0.type == "network" }) else {
            throw .invalidArgument("the container asks for the host's network (no network namespace): containers in a VM cannot share the host's network stack")
        }
        guard let path = network.path else { return nil }
        if let pid = procNamespacePid(path), podPids.contains(pid) { return nil }
        return path
    }

    /// PID of a `/proc/PID/ns/TYPE` path.
    static func procNamespacePid(_ path: String) -> UInt32? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        guard parts.count == 4, parts[0] == "proc", parts[2] == "ns" else { return nil }
        return UInt32(parts[1])
    }
}
