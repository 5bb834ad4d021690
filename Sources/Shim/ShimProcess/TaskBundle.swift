import Foundation

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

    /// The spec's annotations (empty when there are none).
    public func annotations() throws(ShimError) -> [String: String] {
        guard let data = FileManager.default.contents(atPath: configPath) else {
            throw .invalidArgument("no OCI spec at \(configPath)")
        }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw .invalidArgument("\(configPath) is not a JSON object")
        }
        return (json["annotations"] as? [String: String]) ?? [:]
    }

    /// Writes `content` to a file of the bundle atomically.
    public func write(_ content: String, to file: String) throws(ShimError) {
        do {
            try content.write(toFile: file, atomically: true, encoding: .utf8)
        } catch {
            throw .system("write \(file): \(error)")
        }
    }
}
