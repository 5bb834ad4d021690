import ContainerdAPI
import FoundationEssentials
import Glibc
import SkiffSupport
import VMController

/// A container's root filesystem on block devices: containerd's overlay rootfs (its
/// overlayfs snapshotter's mount) taken apart and rebuilt in the guest. Each read-only layer
/// directory becomes a cached erofs image (`LayerCache`) attached read-only over SCSI and shared
/// by the pod's containers; what the snapshot's own upper directory already holds becomes an
/// erofs image of the container's, the topmost lower layer; a sparse ext4 scratch disk in the
/// bundle holds the overlay's upper and work directories; the agent mounts the overlay.
enum BlockRootfs {
    /// What the container's guest root is mounted from.
    struct Overlay: Equatable {
        /// Lower directories on the host, the topmost first.
        var lowers: [String]
        var upper: String?
    }

    /// containerd's rootfs when it is one overlay mount with lower directories.
    static func overlay(of mounts: [Containerd_Types_Mount]) -> Overlay? {
        guard mounts.count == 1, let mount = mounts.first, mount.type == "overlay" else { return nil }
        var overlay = Overlay(lowers: [])
        for option in mount.options {
            if option.hasPrefix("lowerdir=") { overlay.lowers = option.dropFirst(9).split(separator: ":").map(String.init) }
            if option.hasPrefix("upperdir=") { overlay.upper = String(option.dropFirst(9)) }
        }
        return overlay.lowers.isEmpty ? nil : overlay
    }

    /// containerd's rootfs when it is one mount of a filesystem on a host block device or image
    /// file (a devmapper or erofs snapshotter's): it goes to the VM as it is.
    static func device(of mounts: [Containerd_Types_Mount]) -> BlockVolumes.Volume? {
        guard mounts.count == 1, let mount = mounts.first else { return nil }
        return BlockVolumes.diskMount(index: 0, type: mount.type, source: mount.source, options: mount.options)
    }

    /// The guest path of the container's root.
    static func guestRoot(_ id: String) -> String { "/run/skiff/rootfs/\(id)" }

    /// Builds the root in the guest; its guest path. Every step is recorded in `taken` before
    /// the next, so a failure (or Delete) undoes it in reverse.
    static func make(_ overlay: Overlay, id: String, bundle: TaskBundle, scratchMiB: Int, disks: any ContainerDisks,
                     layers: LayerCache, guest: any ContainerGuest, taken: inout [ContainerController.Release]) async throws(SkiffError) -> String {
        var lowers: [String] = []
        if let upper = overlay.upper, let entries = try? FileManager.default.contentsOfDirectory(atPath: upper), !entries.isEmpty {
            let image = bundle.path + "/skiff-upper.erofs"
            taken.append(.file(image))
            let (status, output) = await HostCommand.run(LayerCache.tool("mkfs.erofs"), [image, upper])
            guard status == 0 else { throw LayerCache.toolFailure("converting the snapshot's upper directory", status: status, output: output) }
            lowers.append(try await BlockVolumes.attach(image, readOnly: true, mount: .init(fstype: "erofs"), disks: disks, taken: &taken).mountPath)
        }
        for layer in overlay.lowers {
            let image = try await layers.image(for: layer)
            lowers.append(try await BlockVolumes.attach(image, readOnly: true, mount: .init(fstype: "erofs"), disks: disks, taken: &taken).mountPath)
        }
        let scratchImage = bundle.path + "/skiff-scratch.ext4"
        taken.append(.file(scratchImage))
        try await LayerCache.makeScratch(at: scratchImage, mib: scratchMiB)
        let scratch = try await BlockVolumes.attach(scratchImage, readOnly: false, mount: .init(fstype: "ext4"), disks: disks, taken: &taken).mountPath
        let root = guestRoot(id)
        taken.append(.guestMount(root))
        try await guestCall("mount the root of \(id) in the VM") { try await guest.mountOverlay(lowers: lowers, scratch: scratch, target: root) }
        return root
    }
}
