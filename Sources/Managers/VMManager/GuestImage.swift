import FoundationEssentials
import Glibc

/// Where the guest kernel and initramfs are: `scripts/build-guest` writes them to
/// `$SKIFF_GUEST_DIR`, else /var/lib/skiff/guest, and this finds them there with no other
/// configuration. The decompressed `vmlinux` is preferred: it boots seconds sooner under TCG
/// than `vmlinuz`, which the guest would have to decompress in emulation. `root.erofs` is the
/// guest's root, which the initramfs mounts from a virtio-pmem device (nil: an image built
/// before it, whose initramfs is the whole root).
public struct GuestImage: Sendable, Equatable {
    public static let defaultDirectory = "/var/lib/skiff/guest"

    public var kernel: String
    public var initrd: String
    /// The boot-floor initramfs (benchmarks only).
    public var floor: String
    /// The guest's root image (erofs), mapped into the VM as virtio-pmem.
    public var root: VMDocument.GuestRoot?

    public init(kernel: String, initrd: String, floor: String, root: VMDocument.GuestRoot? = nil) {
        self.kernel = kernel
        self.initrd = initrd
        self.floor = floor
        self.root = root
    }

    /// The image in `directory` (default: `$SKIFF_GUEST_DIR` or /var/lib/skiff/guest).
    public static func locate(directory: String? = nil) throws(VMManagerError) -> GuestImage {
        let dir = directory ?? ProcessInfo.processInfo.environment["SKIFF_GUEST_DIR"] ?? defaultDirectory
        let fm = FileManager.default
        let kernel = ["vmlinux", "vmlinuz"].map { dir + "/" + $0 }.first { fm.fileExists(atPath: $0) }
        let initrd = dir + "/initrd.img"
        guard let kernel, fm.fileExists(atPath: initrd) else {
            throw .invalidConfiguration("no guest image in \(dir) (a kernel and initrd.img): run scripts/build-guest --agent PATH")
        }
        let rootPath = dir + "/root.erofs"
        var root: VMDocument.GuestRoot?
        if fm.fileExists(atPath: rootPath) {
            var info = stat()
            guard stat(rootPath, &info) == 0 else { throw .invalidConfiguration("cannot read the guest root image \(rootPath)") }
            root = VMDocument.GuestRoot(path: rootPath, sizeBytes: Int(info.st_size))
        }
        return GuestImage(kernel: kernel, initrd: initrd, floor: dir + "/floor.img", root: root)
    }
}
