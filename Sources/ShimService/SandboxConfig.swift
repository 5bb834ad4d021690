import VMManager

/// What the pod's VM should be, from the first container's annotations: a pure function,
/// so the mapping is pinned by a table test. Unknown `io.skiff.*` keys are refused rather
/// than silently ignored.
public struct SandboxConfig: Sendable, Equatable {
    public var memoryMiB = 256
    public var vcpus = 1
    /// nil: probe (KVM when a real boot works, else TCG).
    public var accelerator: VMDocument.Accelerator?
    public var kernel: String?
    public var initrd: String?
    public var bootTimeout: Duration = .seconds(60)

    public init() {}

    public static let prefix = "io.skiff."

    public static func from(annotations: [String: String]) throws(ServiceError) -> SandboxConfig {
        var config = SandboxConfig()
        for (key, value) in annotations where key.hasPrefix(prefix) {
            let name = String(key.dropFirst(prefix.count))
            switch name {
            case "memory-mib":
                guard let mib = Int(value), (64...65536).contains(mib) else { throw .invalidArgument("\(key)=\(value): 64 to 65536 MiB") }
                config.memoryMiB = mib
            case "vcpus":
                guard let n = Int(value), (1...64).contains(n) else { throw .invalidArgument("\(key)=\(value): 1 to 64") }
                config.vcpus = n
            case "accel":
                guard let accel = VMDocument.Accelerator(rawValue: value) else { throw .invalidArgument("\(key)=\(value): kvm or tcg") }
                config.accelerator = accel
            case "kernel":
                guard value.hasPrefix("/") else { throw .invalidArgument("\(key)=\(value): an absolute path") }
                config.kernel = value
            case "initrd":
                guard value.hasPrefix("/") else { throw .invalidArgument("\(key)=\(value): an absolute path") }
                config.initrd = value
            case "boot-timeout":
                guard let seconds = Int(value), (1...3600).contains(seconds) else { throw .invalidArgument("\(key)=\(value): 1 to 3600 seconds") }
                config.bootTimeout = .seconds(seconds)
            default:
                throw .invalidArgument("unknown annotation \(key)")
            }
        }
        return config
    }
}
