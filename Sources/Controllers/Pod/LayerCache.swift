import FoundationEssentials
import Glibc
import SkiffSupport

/// containerd's committed snapshots (read-only layer directories) as erofs images, made once
/// with Debian's erofs-utils and kept, keyed by the snapshot's path (a committed snapshot never
/// changes), so every container and every pod of an image attaches the same files and shares
/// their pages in the host's cache. Collected at each use: an image whose snapshot is gone goes,
/// and beyond `limit` images the least recently used go.
public struct LayerCache: Sendable {
    public let directory: String
    public let limit: Int

    public init(directory: String = "/var/lib/skiff/layers", limit: Int = 256) {
        self.directory = directory
        self.limit = limit
    }

    /// The image of the layer directory `snapshot`, made if there is none. InvalidArgument for
    /// a directory that is not there; Internal with mkfs.erofs's words when it cannot convert
    /// (a full disk among them), leaving no partial image.
    public func image(for snapshot: String) async throws(SkiffError) -> String {
        var info = stat()
        guard stat(snapshot, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw .invalidArgument("layer \(snapshot) is not a directory")
        }
        try Self.makeDirectory(directory)
        let key = String(SHA256.hex(Array(snapshot.utf8)).prefix(32))
        let image = "\(directory)/\(key).erofs"
        if access(image, F_OK) == 0 {
            utimes(image, nil)  // most recently used
            return image
        }
        let partial = "\(image).partial-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let (status, output) = await HostCommand.run(Self.tool("mkfs.erofs"), [partial, snapshot])
        guard status == 0 else {
            unlink(partial)
            throw Self.toolFailure("converting layer \(snapshot) to erofs", status: status, output: output)
        }
        // Published with link(2), which never replaces: once an image is at its path it stays
        // that file, even while another pod made the same one (QEMU may open a path again).
        let code = link(partial, image) == 0 ? 0 : errno
        unlink(partial)
        guard code == 0 || code == EEXIST else { throw .internalError("publishing layer image \(image): \(String(cString: strerror(code)))") }
        try? snapshot.write(toFile: "\(directory)/\(key).source", atomically: true, encoding: .utf8)
        collect()
        return image
    }

    /// Removes images whose snapshot is gone, then the least recently used beyond `limit`.
    public func collect() {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var images: [(path: String, used: Int)] = []
        for name in names where name.hasSuffix(".erofs") {
            let image = "\(directory)/\(name)", source = String(image.dropLast(".erofs".count)) + ".source"
            if let snapshot = try? String(contentsOfFile: source, encoding: .utf8), access(snapshot, F_OK) != 0 {
                unlink(image)
                unlink(source)
                continue
            }
            var info = stat()
            if stat(image, &info) == 0 { images.append((image, Int(info.st_mtim.tv_sec))) }
        }
        for old in images.sorted(by: { $0.used > $1.used }).dropFirst(limit) {
            unlink(old.path)
            unlink(String(old.path.dropLast(".erofs".count)) + ".source")
        }
    }

    /// A Debian system tool's path (its bare name when it is not found: the spawn then says so).
    static func tool(_ name: String) -> String { HostCommand.locate(name) ?? name }

    static func makeDirectory(_ path: String) throws(SkiffError) {
        do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
            throw .internalError("cannot make \(path): \(error)", cause: error)
        }
    }

    /// A sparse ext4 image of `mib` MiB at `path`, for a container's writes. Throws
    /// ResourceExhausted when the host's filesystem is full (ENOSPC), else Internal with
    /// mkfs.ext4's words; no file is left then.
    static func makeScratch(at path: String, mib: Int) async throws(SkiffError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0, ftruncate(fd, off_t(mib) << 20) == 0 else {
            let error = errno
            if fd >= 0 { close(fd) }
            unlink(path)
            throw .init(error == ENOSPC ? .resourceExhausted : .internal, "cannot make the scratch disk \(path): \(String(cString: strerror(error)))")
        }
        close(fd)
        let (status, output) = await HostCommand.run(tool("mkfs.ext4"), ["-q", "-F", "-m", "0", path])
        guard status == 0 else {
            unlink(path)
            throw toolFailure("cannot format the scratch disk \(path)", status: status, output: output)
        }
    }

    /// A host tool's failure (mkfs.ext4, mkfs.erofs) in its own words: ResourceExhausted when
    /// the host's filesystem was full (ENOSPC's message in its output), else Internal.
    static func toolFailure(_ what: String, status: Int32, output: String) -> SkiffError {
        let full = output.contains(String(cString: strerror(ENOSPC)))
        return .init(full ? .resourceExhausted : .internal, "\(what): \(output.isEmpty ? "exit \(status)" : output)")
    }
}
