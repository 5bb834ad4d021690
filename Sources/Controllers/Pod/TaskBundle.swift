import FoundationEssentials
import Glibc
import SkiffSupport
import VMController

/// The bundle directory containerd makes for a task: config.json (the OCI spec), rootfs,
/// the `address` file a shim writes, the `log` fifo, and Skiff's own `skiff-vm` file naming
/// the state directory of the VM, so `delete` can clean up after a killed shim.
public struct TaskBundle: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    public var configPath: String { path + "/config.json" }
    public var rootfs: String { path + "/rootfs" }
    public var addressFile: String { path + "/address" }
    public var logFifo: String { path + "/log" }
    public var vmFile: String { path + "/skiff-vm" }

    /// The spec's annotations (empty when there are none). InvalidArgument when there is no
    /// readable spec.
    public func annotations() throws(SkiffError) -> [String: String] {
        guard let data = FileManager.default.contents(atPath: configPath) else {
            throw .invalidArgument("no OCI spec at \(configPath)")
        }
        do {
            return try JSONDecoder().decode(OCISpec.self, from: data).annotations ?? [:]
        } catch {
            throw .invalidArgument("\(configPath) is not an OCI spec: \(error)", cause: error)
        }
    }

    /// Writes `content` to a file of the bundle atomically.
    public func write(_ content: String, to file: String) throws(SkiffError) {
        do {
            try content.write(toFile: file, atomically: true, encoding: .utf8)
        } catch {
            throw .internalError("write \(file): \(error)", cause: error)
        }
    }

    /// The VM state directory the bundle names, if it names one.
    public func vmStateDirectory() -> String? {
        guard let text = try? String(contentsOfFile: vmFile, encoding: .utf8) else { return nil }
        let trimmed = text.trimmed()
        return trimmed.isEmpty ? nil : trimmed
    }
}

/// Cleanup from durable files alone, for `shim delete` when the pod's shim is gone.
public enum PodCleanup {
    /// Tears down the VM the bundle names (through its handles file) and unmounts the
    /// bundle's rootfs. Returns the failures; the bundle's `skiff-vm` goes once the VM is gone.
    public static func run(bundle: TaskBundle, includingVM: Bool) async -> [String] {
        var failures: [String] = []
        if includingVM, let stateDirectory = bundle.vmStateDirectory() {
            failures += await VMController.cleanUp(stateDirectory: stateDirectory)
            if failures.isEmpty { unlink(bundle.vmFile) }
        }
        do { try HostRootfs().unmount(bundle.rootfs) } catch { failures.append(error.message) }
        return failures
    }
}
