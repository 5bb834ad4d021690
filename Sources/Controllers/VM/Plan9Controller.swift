import FoundationEssentials
import Glibc
import SkiffSupport

/// What the Plan9 controller asks of the guest: mounts.
public protocol Plan9Guest: Sendable {
    func mount(source: String, target: String, fstype: String, options: [String]) async throws
    func unmount(target: String) async throws
}

/// What it asks of the host: bind mounts into the shared directory.
public protocol HostMounter: Sendable {
    func bind(source: String, target: String, readOnly: Bool) throws
    func unbind(target: String) throws
}

/// Shares host files and directories with the guest over the VM's single virtio-9p export.
///
/// ## Architecture
/// QEMU 7.2 cannot hot-add a 9p device, so each VM exports one host directory (the *share
/// root*, `STATE/share`) under one tag. A host path is shared by bind-mounting it into a fresh
/// subdirectory of the share root (read-only binds are remounted read-only, so the guest cannot
/// write through them); in the guest, the 9p export is mounted once at `/run/skiff/share`, and
/// each share is bind-mounted from there to its own guest path, read-only again where asked.
///
/// ## Usage
/// `reserve` (no I/O) → `mapToGuest` (host bind, guest mount; returns the guest path) →
/// `unmapFromGuest` (guest unmount, host unbind when the last reservation goes).
///
/// ## Retry and idempotency
/// Identical reservations (same host path and mode) share one entry and a reference count.
/// `mapToGuest` on a mapped share returns its path. A failed step leaves the share in the
/// last state it reached, and the next call resumes from there:
///
/// | state | mapToGuest | unmapFromGuest (last reference) |
/// |---|---|---|
/// | reserved | bind on host → hostBound → guestMounted | forget |
/// | hostBound | mount in guest → guestMounted | unbind → forget |
/// | guestMounted | no-op | unmount in guest → hostBound → unbind → forget |
///
/// Host bind mounts are recorded in the VM's handles file before they are made, so cleanup
/// after a crash finds them. `mapToGuest` and `unmapFromGuest` are serialized (one
/// `AsyncMutex`): two containers sharing a path never interleave its steps.
public actor Plan9Controller {
    public struct ShareID: Hashable, Sendable {
        public let value: Int
        public init(value: Int) { self.value = value }
    }

    enum ShareState: Equatable { case reserved, hostBound, guestMounted }

    struct Share {
        var hostPath: String
        var readOnly: Bool
        var references: Int
        var state: ShareState
    }

    public static let guestShareRoot = "/run/skiff/share"
    public static let guestMountRoot = "/run/skiff/mounts"

    public let shareRoot: String
    public let tag: String
    private let mounter: any HostMounter
    private let handles: HandlesFile?
    private var guest: (any Plan9Guest)?
    private var shareRootMounted = false
    private var shares: [ShareID: Share] = [:]
    private var nextID = 0
    private let changes = AsyncMutex()

    public init(shareRoot: String, tag: String, mounter: any HostMounter = LinuxHostMounter(), handles: HandlesFile?) {
        self.shareRoot = shareRoot
        self.tag = tag
        self.mounter = mounter
        self.handles = handles
    }

    /// The guest to mount in, once the VM runs.
    public func attach(guest: any Plan9Guest) {
        self.guest = guest
        shareRootMounted = false
    }

    /// Reserves a share of `hostPath`; identical reservations share one entry.
    public func reserve(hostPath: String, readOnly: Bool) throws(VMControllerError) -> ShareID {
        guard hostPath.hasPrefix("/") else { throw .invalidArgument("share path \(hostPath) must be absolute") }
        guard access(hostPath, F_OK) == 0 else { throw .notFound("share path \(hostPath) does not exist") }
        if let (id, _) = shares.first(where: { $0.value.hostPath == hostPath && $0.value.readOnly == readOnly }) {
            shares[id]?.references += 1
            return id
        }
        let id = ShareID(value: nextID)
        nextID += 1
        shares[id] = Share(hostPath: hostPath, readOnly: readOnly, references: 1, state: .reserved)
        return id
    }

    /// Where the share appears in the guest once mapped.
    public nonisolated func guestPath(_ id: ShareID) -> String { "\(Self.guestMountRoot)/\(id.value)" }
    nonisolated func hostTarget(_ id: ShareID) -> String { "\(shareRoot)/\(id.value)" }

    /// Makes the share visible in the guest and returns its guest path.
    public func mapToGuest(_ id: ShareID) async throws(VMControllerError) -> String {
        try await changes.withLock { () async throws(VMControllerError) -> String in try await map(id) }
    }

    private func map(_ id: ShareID) async throws(VMControllerError) -> String {
        guard var share = shares[id] else { throw .notFound("no share \(id.value)") }
        guard let guest else { throw .wrongState(operation: "mapping a share", state: .created) }
        if share.state == .reserved {
            let target = hostTarget(id)
            do {
                try handles?.update { $0.hostMounts.append(target) }
                try mounter.bind(source: share.hostPath, target: target, readOnly: share.readOnly)
            } catch {
                try? handles?.update { $0.hostMounts.removeAll { $0 == target } }
                throw .operationFailed("share \(share.hostPath): \(error)")
            }
            share.state = .hostBound
            shares[id]?.state = .hostBound
        }
        if share.state == .hostBound {
            do {
                if !shareRootMounted {
                    try await guest.mount(source: tag, target: Self.guestShareRoot, fstype: "9p",
                                          options: ["trans=virtio", "version=9p2000.L", "msize=262144", "cache=none"])
                    shareRootMounted = true
                }
                try await guest.mount(source: "\(Self.guestShareRoot)/\(id.value)", target: guestPath(id), fstype: "",
                                      options: share.readOnly ? ["bind", "ro"] : ["bind"])
            } catch {
                throw .operationFailed("mounting share \(share.hostPath) in the guest: \(error)")
            }
            share.state = .guestMounted
            shares[id]?.state = .guestMounted
        }
        return guestPath(id)
    }

    /// Drops one reservation; the last one unmounts in the guest and unbinds on the host.
    public func unmapFromGuest(_ id: ShareID) async throws(VMControllerError) {
        try await changes.withLock { () async throws(VMControllerError) in try await unmap(id) }
    }

    private func unmap(_ id: ShareID) async throws(VMControllerError) {
        guard var share = shares[id] else { throw .notFound("no share \(id.value)") }
        if share.references > 1 {
            shares[id]?.references -= 1
            return
        }
        if share.state == .guestMounted {
            if let guest {
                do {
                    try await guest.unmount(target: guestPath(id))
                } catch {
                    throw .operationFailed("unmounting share \(share.hostPath) in the guest: \(error)")
                }
            }
            share.state = .hostBound
            // Field by field: a reserve may have come in during the await.
            shares[id]?.state = .hostBound
        }
        if share.state == .hostBound {
            try unbind(id)
        }
        shares[id] = nil
    }

    /// Host side only, for a VM that is gone: unbinds every share. Returns the failures.
    public func releaseAll() -> [String] {
        var failures: [String] = []
        for (id, share) in shares.sorted(by: { $0.key.value < $1.key.value }) where share.state != .reserved {
            do {
                try unbind(id)
                shares[id] = nil
            } catch {
                failures.append("\(error)")
            }
        }
        // What is left failed to unbind and stays for a retry.
        shares = shares.filter { $0.value.state != .reserved }
        guest = nil
        shareRootMounted = false
        return failures
    }

    /// Shares currently known, for diagnostics and tests.
    public var count: Int { shares.count }

    private func unbind(_ id: ShareID) throws(VMControllerError) {
        let target = hostTarget(id)
        do {
            try mounter.unbind(target: target)
        } catch {
            throw .operationFailed("unbinding \(target): \(error)")
        }
        try? handles?.update { $0.hostMounts.removeAll { $0 == target } }
        if var share = shares[id] {
            share.state = .reserved
            shares[id] = share
        }
    }
}

/// Bind mounts with mount(2): the target is created to match the source (directory or file),
/// and read-only binds are remounted read-only.
public struct LinuxHostMounter: HostMounter {
    public init() {}

    public func bind(source: String, target: String, readOnly: Bool) throws {
        var info = stat()
        guard stat(source, &info) == 0 else {
            throw VMControllerError.notFound("\(source) does not exist")
        }
        if info.st_mode & S_IFMT == S_IFDIR {
            if mkdir(target, 0o755) != 0, errno != EEXIST { throw Self.failure("mkdir \(target)") }
        } else {
            let fd = open(target, O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw Self.failure("create \(target)") }
            close(fd)
        }
        guard mount(source, target, nil, UInt(MS_BIND | MS_REC), nil) == 0 else {
            let error = Self.failure("bind \(source) on \(target)")
            remove(target)
            throw error
        }
        if readOnly {
            guard mount("", target, nil, UInt(MS_REMOUNT | MS_BIND | MS_RDONLY | MS_REC), nil) == 0 else {
                let error = Self.failure("remount \(target) read-only")
                umount2(target, Int32(MNT_DETACH))
                remove(target)
                throw error
            }
        }
    }

    public func unbind(target: String) throws {
        if umount2(target, Int32(MNT_DETACH)) != 0, errno != EINVAL, errno != ENOENT {
            throw Self.failure("unmount \(target)")
        }
        if remove(target) != 0, errno != ENOENT { throw Self.failure("remove \(target)") }
    }

    private static func failure(_ what: String) -> VMControllerError {
        .operationFailed("\(what): \(String(cString: strerror(errno)))")
    }
}
