import ContainerdAPI
import FoundationEssentials
import Glibc
import SkiffSupport
import SwiftProtobuf
import VMController

/// What the pod's VM should be: the runtime's config file (containerd's runtime options)
/// gives defaults, and the first container's `io.skiff.*` annotations override them. Both
/// use the same names (`memory-mib`, `vcpus`, `accel`, `kernel`, `initrd`, `boot-timeout`);
/// unknown names are refused rather than silently ignored. Pure functions of their input,
/// so the mapping is pinned by table tests.
public struct SandboxConfig: Sendable, Equatable {
    public var memoryMiB = 256
    public var vcpus = 1
    /// nil: probe (KVM when a real boot works, else TCG).
    public var accelerator: VMOptions.Accelerator?
    public var kernel: String?
    public var initrd: String?
    public var bootTimeout: Duration = .seconds(60)
    /// Where containers' roots live: `9p` (the host's overlay shared into the VM, so the host
    /// sees the writes; the default while `block` costs a cold start about a second) or `block`
    /// (erofs layers and an ext4 scratch disk over SCSI, an overlay in the guest).
    public var rootfs: RootfsMode = .ninep
    /// The size of a container's scratch disk (sparse: only what is written takes space), MiB.
    public var scratchMiB = 1024
    /// PCIe root ports for hot-added PCI devices (assigned devices and NICs).
    public var pciRootPorts = 4
    /// How a container meets its VFIO devices in the VM (`vfio-mode`): `vfio`, through the
    /// guest's VFIO group nodes as under runc, or `guest-kernel`, through the guest's own
    /// driver. A container's own `io.skiff.vfio-mode` annotation overrides it.
    public var vfioMode = "vfio"
    /// Whether the pod's VM starts as a copy of a booted template of its shape (`templates`:
    /// `on`, the default, or `off`: every VM boots); see `VMOptions.templates`.
    public var templates = true
    /// Whether the host's KSM may merge the VM's memory with other VMs' (`ksm`: `on` or `off`,
    /// the default); `on` starts KSM when it is stopped. See `VMOptions.memoryMerging`.
    public var ksm = false

    public enum RootfsMode: String, Sendable, Equatable { case block, ninep = "9p" }

    public init() {}

    /// The VM these settings describe.
    public func vmOptions(imageDirectory: String?) -> VMOptions {
        var options = VMOptions()
        options.memoryMiB = memoryMiB
        options.vcpus = vcpus
        options.accelerator = accelerator
        options.kernel = kernel
        options.initrd = initrd
        options.imageDirectory = imageDirectory
        options.bootTimeout = bootTimeout
        options.disksEarly = rootfs == .block
        options.pciRootPorts = pciRootPorts
        options.templates = templates
        options.memoryMerging = ksm
        return options
    }

    /// The settings of the runtime's config file, when containerd's runtime options name one
    /// (`ctr run --runtime-config-path`, or the CRI plugin's runtime options). InvalidArgument
    /// for options of another runtime, undecodable ones, or a file that cannot be read.
    public static func runtimeConfig(_ options: Google_Protobuf_Any) throws(SkiffError) -> SandboxConfig {
        guard !options.typeURL.isEmpty else { return SandboxConfig() }
        guard options.typeURL.hasSuffix("runtimeoptions.v1.Options") else {
            throw .invalidArgument("runtime options of type \(options.typeURL) are not Skiff's (runtimeoptions.v1.Options)")
        }
        let decoded: Runtimeoptions_V1_Options
        do { decoded = try Runtimeoptions_V1_Options(serializedBytes: options.value) } catch {
            throw .invalidArgument("undecodable runtime options: \(error)", cause: error)
        }
        guard !decoded.configPath.isEmpty else { return SandboxConfig() }
        guard let data = FileManager.default.contents(atPath: decoded.configPath) else {
            throw .invalidArgument("cannot read the runtime config file \(decoded.configPath)")
        }
        return try SandboxConfig.from(configFile: String(decoding: data, as: UTF8.self), path: decoded.configPath)
    }

    public static let prefix = "io.skiff."

    public static func from(annotations: [String: String], base: SandboxConfig = SandboxConfig()) throws(SkiffError) -> SandboxConfig {
        var config = base
        for (key, value) in annotations.sorted(by: { $0.key < $1.key }) where key.hasPrefix(prefix) {
            try config.set(String(key.dropFirst(prefix.count)), to: value, source: key)
        }
        return config
    }

    /// The runtime's config file: `name = value` lines (TOML's simple form: values may be
    /// quoted, `#` starts a comment, a `[section]` header is allowed and ignored).
    public static func from(configFile text: String, path: String) throws(SkiffError) -> SandboxConfig {
        var config = SandboxConfig()
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = Substring(raw)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let trimmed = line.trimmed()
            if trimmed.isEmpty || (trimmed.hasPrefix("[") && trimmed.hasSuffix("]")) { continue }
            guard let equals = trimmed.firstIndex(of: "=") else {
                throw .invalidArgument("\(path):\(number + 1): expected name = value")
            }
            let name = trimmed[..<equals].trimmed()
            var value = trimmed[trimmed.index(after: equals)...].trimmed()
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            try config.set(name, to: value, source: "\(path):\(number + 1): \(name)")
        }
        return config
    }

    private mutating func set(_ name: String, to value: String, source key: String) throws(SkiffError) {
        switch name {
        case "memory-mib":
            guard let mib = Int(value), (64...65536).contains(mib) else { throw .invalidArgument("\(key)=\(value): 64 to 65536 MiB") }
            self.memoryMiB = mib
        case "vcpus":
            guard let n = Int(value), (1...64).contains(n) else { throw .invalidArgument("\(key)=\(value): 1 to 64") }
            self.vcpus = n
        case "accel":
            guard let accel = VMOptions.Accelerator(rawValue: value) else { throw .invalidArgument("\(key)=\(value): kvm or tcg") }
            self.accelerator = accel
        case "kernel":
            guard value.hasPrefix("/") else { throw .invalidArgument("\(key)=\(value): an absolute path") }
            self.kernel = value
        case "initrd":
            guard value.hasPrefix("/") else { throw .invalidArgument("\(key)=\(value): an absolute path") }
            self.initrd = value
        case "boot-timeout":
            guard let seconds = Int(value), (1...3600).contains(seconds) else { throw .invalidArgument("\(key)=\(value): 1 to 3600 seconds") }
            self.bootTimeout = .seconds(seconds)
        case "rootfs":
            guard let mode = RootfsMode(rawValue: value) else { throw .invalidArgument("\(key)=\(value): block or 9p") }
            self.rootfs = mode
        case "pci-ports":
            guard let n = Int(value), (0...16).contains(n) else { throw .invalidArgument("\(key)=\(value): 0 to 16 root ports") }
            self.pciRootPorts = n
        case "vfio-mode":
            guard ["vfio", "guest-kernel"].contains(value) else { throw .invalidArgument("\(key)=\(value): vfio or guest-kernel") }
            self.vfioMode = value
        case "templates":
            guard ["on", "off"].contains(value) else { throw .invalidArgument("\(key)=\(value): on or off") }
            self.templates = value == "on"
        case "ksm":
            guard ["on", "off"].contains(value) else { throw .invalidArgument("\(key)=\(value): on or off") }
            self.ksm = value == "on"
        case "scratch-mib":
            guard let mib = Int(value), (16...1_048_576).contains(mib) else { throw .invalidArgument("\(key)=\(value): 16 to 1048576 MiB") }
            self.scratchMiB = mib
        default:
            throw .invalidArgument("unknown setting \(key)")
        }
    }
}
