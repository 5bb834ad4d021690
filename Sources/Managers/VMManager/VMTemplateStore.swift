import FoundationEssentials
import Glibc

/// VM templates: a booted guest's memory and device state, kept so that a later VM of the same
/// shape starts as a copy of it instead of booting (Kata's "VM templating" does the same with
/// QEMU). A copy maps the template's memory file private: every copy reads the same host page
/// cache pages (the guest kernel, its modules, the agent as it stood) and owns only the pages it
/// writes; its device state comes from the template by `migrate-incoming` with QEMU's
/// `x-ignore-shared` capability, which leaves the shared memory out of the stream
/// (docs/devel/migration.rst).
///
/// A template belongs to one shape: the QEMU command line with the VM's own paths taken out,
/// and the identity (device, inode, size, modification time) of QEMU and of the guest image's
/// files. Its directory is named by a hash of that identity and holds:
///
///     <directory>/<key>/memory     guest RAM as the template's guest left it
///     <directory>/<key>/state      QEMU's device state (a migration stream without the RAM)
///     <directory>/<key>/identity   the whole identity, compared before every use
///
/// Making one: the first VM of a shape that takes `<key>.lock` (flock, so a dead maker's lock
/// is free again) boots in `build-<vm id>` and publishes by renaming it to `<key>`; VMs that
/// find the lock taken boot as before. Nothing here is per VM once published.
public struct VMTemplateStore: Sendable {
    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    /// A published template's files.
    public struct Template: Sendable, Equatable {
        public var directory: String
        public var memoryFile: String { directory + "/memory" }
        public var stateFile: String { directory + "/state" }
        public var identityFile: String { directory + "/identity" }
    }

    /// The kernel argument a template's guest boots with: its agent loads every module group
    /// before it opens its ports, so copies never wait for one.
    public static let templateKernelArgument = "skiff.template"

    /// The shape of `document` as text: what must be equal for a copy of one VM's template to
    /// be the VM another document describes.
    public static func identity(of document: VMDocument, binary: String) -> String {
        var lines = ["skiff VM template 1", fileIdentity(binary), fileIdentity(document.kernel), fileIdentity(document.initrd)]
        if let root = document.guestRoot { lines.append(fileIdentity(root.path)) }
        var normal = document.relocated(to: "/template", id: "template")
        normal.templateDirectory = nil
        lines += QEMUCommandLine.arguments(for: normal)
        return lines.joined(separator: "\n") + "\n"
    }

    /// The directory name of the template for `identity`: FNV-1a, 64 bits, in hex (a name, not
    /// a proof: the identity file is compared in full).
    public static func key(of identity: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in identity.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// The published template for `identity`, if there is one whose identity file says so.
    public func template(for identity: String) -> Template? {
        let template = Template(directory: directory + "/" + Self.key(of: identity))
        guard let recorded = try? String(contentsOfFile: template.identityFile, encoding: .utf8), recorded == identity,
              access(template.memoryFile, R_OK) == 0, access(template.stateFile, R_OK) == 0
        else { return nil }
        return template
    }

    /// Where VM `id` builds a template before publishing it.
    public func buildDirectory(forVM id: String) -> String { directory + "/build-" + id }

    /// The exclusive right to make the template for `identity`, or nil when another VM holds
    /// it (or the directory cannot be written). Released by `BuildLock.release` or by the
    /// holder's death.
    public func lockForBuilding(_ identity: String) -> BuildLock? {
        guard mkdir(directory, 0o700) == 0 || errno == EEXIST else { return nil }
        let fd = open(directory + "/" + Self.key(of: identity) + ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return nil }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            return nil
        }
        return BuildLock(fd: fd)
    }

    /// Makes the template built in `build` the one for `identity`: its files are synced, the
    /// identity written, and the directory renamed into place (replacing a stale one).
    /// Throws `.startFailed` when a step fails; the build directory is then left to the caller.
    public func publish(build: String, identity: String) throws(VMManagerError) -> Template {
        let built = Template(directory: build)
        for file in [built.memoryFile, built.stateFile] {
            let fd = open(file, O_RDONLY | O_CLOEXEC)
            guard fd >= 0, fsync(fd) == 0 else {
                if fd >= 0 { close(fd) }
                throw .startFailed("template: cannot sync \(file): \(String(cString: strerror(errno)))")
            }
            close(fd)
        }
        guard FileManager.default.createFile(atPath: built.identityFile, contents: Data(identity.utf8)) else {
            throw .startFailed("template: cannot write \(built.identityFile)")
        }
        let target = Template(directory: directory + "/" + Self.key(of: identity))
        Self.remove(target.directory)
        guard rename(build, target.directory) == 0 else {
            throw .startFailed("template: cannot publish \(build): \(String(cString: strerror(errno)))")
        }
        return target
    }

    /// Removes a template (one a copy could not start from), or a build directory.
    public static func remove(_ directory: String) {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private static func fileIdentity(_ path: String) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else { return "\(path) missing" }
        return "\(path) \(info.st_dev):\(info.st_ino) \(info.st_size) \(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
    }
}

/// An flock held on a template's lock file.
public final class BuildLock: Sendable {
    private let fd: Int32
    init(fd: Int32) { self.fd = fd }
    deinit { close(fd) }
}

extension VMDocument {
    /// This document with its own files (sockets, logs, pid file, share) moved to
    /// `directory` under their own names, and id `id`.
    public func relocated(to directory: String, id: String) -> VMDocument {
        func moved(_ path: String) -> String {
            directory + "/" + (path.split(separator: "/").last.map(String.init) ?? path)
        }
        var d = self
        d.id = id
        d.consoleLog = moved(consoleLog)
        d.qmpSocket = moved(qmpSocket)
        d.qmpFDSocket = qmpFDSocket.map(moved)
        d.pidFile = moved(pidFile)
        d.qemuLog = moved(qemuLog)
        if case let .virtioSerial(control, stdio) = agentChannel {
            d.agentChannel = .virtioSerial(control: .init(socketPath: moved(control.socketPath), name: control.name),
                                           stdio: .init(socketPath: moved(stdio.socketPath), name: stdio.name))
        }
        d.sharedDirectory = sharedDirectory.map { .init(hostPath: moved($0.hostPath), tag: $0.tag) }
        return d
    }
}
