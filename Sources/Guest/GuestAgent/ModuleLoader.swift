import CSkiffSys
import Glibc

/// Loads kernel modules with `finit_module`, dependencies first, from the initramfs's
/// /lib/modules/RELEASE (its modules.dep, made by depmod when the image was built), and the
/// "post:" soft dependencies of modules.softdep after (vfio asks for vfio_iommu_type1 that
/// way, as modprobe would load it; one missing from the image is skipped).
/// A module the kernel has built in or already loaded counts as loaded.
public struct ModuleLoader: Sendable {
    /// What the agent needs to open its channel; loaded before it serves.
    public static let channelModules = ["virtio_pci", "virtio_console"]
    /// What 9p shares need; loaded first while serving, since a container's create mounts a
    /// share right after the boot.
    public static let shareModules = ["9pnet_virtio", "9p"]
    /// The memory balloon (memory updates, free page reporting): loaded after the share modules.
    public static let backgroundModules = ["virtio_balloon"]
    /// The rest load the first time something needs them, not at boot, where linking them
    /// would hold the one vCPU while the first container is created (under TCG some 0.1 s a
    /// module: virtio_scsi 0.135 s, sd_mod 0.11 s, ext4 0.12 s). The pod's disks: the SCSI
    /// driver and disks (sd), at the first disk mount.
    public static let scsiModules = ["virtio_scsi", "sd_mod"]
    /// The filesystems of the pod's disks (ext4 asks the crypto API for crc32c), at the first
    /// disk mount.
    public static let diskFilesystemModules = ["crc32c_generic", "erofs", "ext4"]
    /// The pod's NICs, at the first interface the host configures.
    public static let networkModules = ["virtio_net"]
    /// Every group after the channel's, in order: what a template's guest loads before it opens
    /// its ports (kernel argument `templateArgument`), so that copies of it need none.
    public static let templateGroups = [shareModules, backgroundModules, scsiModules, diskFilesystemModules, networkModules]
    /// The kernel argument of a template's guest (the host's `VMTemplateStore.templateKernelArgument`).
    public static let templateArgument = "skiff.template"
    /// (overlay, for containers' roots on disks, comes with the guest's own root, which
    /// skiff-init mounts as an overlay.)

    private let root: String
    private var dependencies: [String: [String]] = [:]
    private var postDependencies: [String: [String]] = [:]
    private var paths: [String: String] = [:]
    private var loaded: Set<String> = []

    public init(root: String? = nil) {
        var names = utsname()
        uname(&names)
        let release = withUnsafeBytes(of: &names.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        self.root = root ?? "/lib/modules/\(release)"
        for line in (readTextFile(self.root + "/modules.dep") ?? "").split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let path = String(line[..<colon])
            let name = Self.name(of: path)
            paths[name] = path
            dependencies[name] = line[line.index(after: colon)...].split(separator: " ").map { Self.name(of: String($0)) }
        }
        for line in (readTextFile(self.root + "/modules.softdep") ?? "").split(separator: "\n") {
            if let (name, post) = Self.postDependencies(line) { postDependencies[name] = post }
        }
    }

    /// `softdep vfio pre: a post: vfio_iommu_type1 vfio_iommu_spapr_tce` → ("vfio", [the two]).
    static func postDependencies(_ line: Substring) -> (String, [String])? {
        let words = line.split(separator: " ")
        guard words.count > 2, words[0] == "softdep" else { return nil }
        var post: [String] = []
        var inPost = false
        for word in words.dropFirst(2) {
            if word.hasSuffix(":") { inPost = word == "post:"; continue }
            if inPost { post.append(String(word).replacingDashes()) }
        }
        return post.isEmpty ? nil : (String(words[1]).replacingDashes(), post)
    }

    /// `kernel/fs/9p/9p.ko` → `9p`; dashes and underscores are the same to the kernel.
    static func name(of path: String) -> String {
        let file = path.split(separator: "/").last.map(String.init) ?? path
        let base = file.hasSuffix(".ko") ? String(file.dropLast(3)) : file
        return base.replacingDashes()
    }

    /// Loads `module` and its dependencies. Returns the names it loaded, in order, and the
    /// failures (a module missing from the image is one).
    public mutating func load(_ module: String) -> (loaded: [String], failures: [String]) {
        let name = module.replacingDashes()
        if loaded.contains(name) { return ([], []) }
        guard let path = paths[name] else {
            // Not a module in this image: built in, or absent (then its users will fail clearly).
            loaded.insert(name)
            return ([], [])
        }
        var result: (loaded: [String], failures: [String]) = ([], [])
        for dependency in (dependencies[name] ?? []).reversed() {
            let sub = load(dependency)
            result.loaded += sub.loaded
            result.failures += sub.failures
        }
        loaded.insert(name)
        let fd = open(root + "/" + path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { result.failures.append("\(name): open: \(String(cString: strerror(errno)))"); return result }
        defer { close(fd) }
        if skiff_finit_module(fd, "", 0) == 0 || errno == EEXIST {
            result.loaded.append(name)
        } else {
            result.failures.append("\(name): \(String(cString: strerror(errno)))")
        }
        for post in postDependencies[name] ?? [] where paths[post] != nil {
            let sub = load(post)
            result.loaded += sub.loaded
            result.failures += sub.failures
        }
        return result
    }
}

extension String {
    func replacingDashes() -> String { String(map { $0 == "-" ? "_" : $0 }) }
}
