import CSkiffSpawn
import FoundationEssentials
import Glibc

/// What QEMU may see and do on the host, beyond its seccomp filters: a mount namespace of its
/// own whose root holds only what it needs, and a handful of file capabilities.
///
/// The root (a read-only tmpfs built on `root`, an empty directory the VM's state directory
/// holds) has, each at its host path:
/// - read-only: QEMU's binary, the libraries, modules and firmware it loads (/usr/lib,
///   /usr/lib64, /usr/share, with the /lib and /lib64 links of a merged /usr), the loader's
///   cache, /sys, and the directories of the guest's kernel, initramfs, root image and firmware;
/// - read-write: the directories of the VM's sockets, pid file and console log (its state
///   directory), of its shared directory, and of the templates (a template's guest RAM is
///   written there, a copy maps it). Each is bound alone, without what is mounted under it
///   (the root itself is in the state directory); the share root, a mount of its own, is
///   bound as one, a slave of the host's, so later binds in it reach QEMU;
/// - device nodes: /dev/null, zero, full, random, urandom, and /dev/kvm and /dev/vfio where
///   the host has them; a fresh /proc.
/// No shell or other program, no other pod's files, no host disk. Disk images and taps come
/// as descriptors over QMP (`add-fd`, `getfd`), so QEMU needs no path to them, nor
/// CAP_NET_ADMIN.
///
/// Capabilities kept: CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER and
/// CAP_FSETID, which the 9p server needs to act on a container's files of any owner
/// (`security_model=none`); all others (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SYS_PTRACE, ...) are
/// gone from every set, the bounding set included (capabilities(7)).
public struct QEMUConfinement: Sendable {
    struct Mount: Hashable {
        var source: String
        var flags: Int32
    }

    /// The directory the root is built on.
    var root: String
    /// Parents before children.
    var mounts: [Mount]
    /// (link, target) pairs.
    var links: [(String, String)]
    var capabilities: UInt64

    /// CAP_CHOWN (0), CAP_DAC_OVERRIDE (1), CAP_DAC_READ_SEARCH (2), CAP_FOWNER (3), CAP_FSETID (4).
    static let keptCapabilities: UInt64 = 0b11111

    /// The confinement of the QEMU that runs `d` as `launch` says, from `binary`.
    init(for d: VMDocument, launch: QEMUCommandLine.Launch, binary: String) {
        root = d.confinementRoot
        capabilities = Self.keptCapabilities
        let readOnly = Int32(SKIFF_MOUNT_READ_ONLY)
        let devices = Int32(SKIFF_MOUNT_DEVICES)
        var wanted: [Mount] = []
        func add(_ path: String, _ flags: Int32) {
            if access(path, F_OK) == 0 { wanted.append(Mount(source: path, flags: flags)) }
        }
        for system in ["/usr/lib", "/usr/lib64", "/usr/share", "/etc/ld.so.cache", binary] { add(system, readOnly) }
        add("/sys", readOnly | Int32(SKIFF_MOUNT_RECURSIVE))
        for guestFile in [d.kernel, d.initrd, d.guestRoot?.path, d.firmware].compactMap({ $0 }) { add(Self.directory(of: guestFile), readOnly) }
        var writable = [d.qmpSocket, d.pidFile, d.consoleLog] + (d.qmpFDSocket.map { [$0] } ?? [])
        if case let .virtioSerial(control, stdio) = d.agentChannel { writable += [control.socketPath, stdio.socketPath] }
        for file in writable { add(Self.directory(of: file), 0) }
        if let share = d.sharedDirectory { add(share.hostPath, 0) }
        if let templates = d.templateDirectory { add(templates, 0) }
        switch launch {
        case .boot: break
        case let .template(memoryFile), let .copy(memoryFile): add(Self.directory(of: memoryFile), 0)
        }
        for node in ["null", "zero", "full", "random", "urandom", "kvm", "vfio"] { add("/dev/" + node, devices) }
        wanted.append(Mount(source: "/proc", flags: Int32(SKIFF_MOUNT_PROC)))
        // One mount per path (the most open wins), parents first: a directory inside another
        // (the templates inside the guest image's) is mounted over it.
        var byPath: [String: Int32] = [:]
        for mount in wanted {
            if let flags = byPath[mount.source] {
                byPath[mount.source] = (flags & mount.flags & readOnly) | ((flags | mount.flags) & ~readOnly)
            } else {
                byPath[mount.source] = mount.flags
            }
        }
        let root = self.root
        mounts = byPath.map { Mount(source: $0.key, flags: $0.value) }
            .filter { $0.source != root && !$0.source.hasPrefix(root + "/") }
            .sorted { ($0.source.split(separator: "/").count, $0.source) < ($1.source.split(separator: "/").count, $1.source) }
        links = ["/lib", "/lib64", "/bin", "/sbin"].compactMap { link in
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: link), target.hasPrefix("usr/lib") else { return nil }
            return (link, target)
        }
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }

    /// Calls `body` with this confinement as C sees it (valid only during the call).
    func withCConfinement<T>(_ body: (UnsafePointer<skiff_confinement>) -> T) -> T {
        let strings = ([root] + mounts.map(\.source) + links.flatMap { [$0.0, $0.1] }).map { strdup($0) }
        defer { strings.forEach { free($0) } }
        let rootString = UnsafePointer(strings[0])
        let mountStrings = strings[1...mounts.count]
        let linkStrings = strings[(mounts.count + 1)...].map { UnsafePointer($0) }
        let cMounts = zip(mountStrings, mounts).map { skiff_mount(source: UnsafePointer($0.0), flags: $0.1.flags) }
        return cMounts.withUnsafeBufferPointer { mountBuffer in
            linkStrings.withUnsafeBufferPointer { linkBuffer in
                var c = skiff_confinement(root: rootString, mounts: mountBuffer.baseAddress, mount_count: Int32(mounts.count),
                                          links: linkBuffer.baseAddress, link_count: Int32(links.count), capabilities: capabilities)
                return body(&c)
            }
        }
    }
}

extension VMDocument {
    /// The empty directory, in the VM's state directory, that QEMU's own root is built on.
    public var confinementRoot: String { QEMUConfinement.directory(of: qmpSocket) + "/qemu-root" }
}
