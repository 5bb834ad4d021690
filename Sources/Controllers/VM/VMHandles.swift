import FoundationEssentials
import Glibc

/// The momentary reality of one VM on the host, mirrored to a small JSON file in its state
/// directory: everything a later cleanup must undo. Each resource is recorded *before* it is
/// made, so `HostCleanup` can finish the job from the file alone, even after the process
/// that made them was killed.
public struct VMHandles: Codable, Sendable, Equatable {
    public var vmID: String
    /// QEMU's `-name`, which proves a pid from the pid file is still our QEMU.
    public var processName: String
    public var pidFile: String
    /// Host bind mounts (Plan9 shares), unmounted by cleanup.
    public var hostMounts: [String] = []
    /// Files and sockets, removed by cleanup.
    public var files: [String] = []
    /// Directories removed (when empty) by cleanup, deepest last.
    public var directories: [String] = []
    /// Interfaces of a pod's network namespace whose ingress carries a tc mirror into the VM,
    /// removed by cleanup (the taps go with QEMU).
    public var mirrors: [NetworkMirror]?
    /// Disk images attached to the VM (they go with QEMU; the record says what the pod held).
    public var disks: [String]?
    /// PCI devices assigned to the VM, by identity (they go with QEMU, back to their host
    /// driver; the record says what the pod held).
    public var pciDevices: [String]?

    public init(vmID: String, processName: String, pidFile: String) {
        self.vmID = vmID
        self.processName = processName
        self.pidFile = pidFile
    }
}

/// A tc mirror on `device` in the network namespace at `netns`.
public struct NetworkMirror: Codable, Sendable, Equatable {
    public var netns: String
    public var device: String
    public init(netns: String, device: String) {
        self.netns = netns
        self.device = device
    }
}

/// The handles file: the in-memory `VMHandles` and its on-disk mirror, rewritten atomically
/// (temp file + rename) on every change.
public final class HandlesFile: Sendable {
    public let path: String
    private let current: Mutex<VMHandles>

    public init(path: String, initial: VMHandles) throws {
        self.path = path
        self.current = Mutex(initial)
        try Self.write(initial, to: path)
    }

    public var handles: VMHandles { current.withLock { $0 } }

    /// Applies `change` and writes the file before returning.
    public func update(_ change: (inout VMHandles) -> Void) throws {
        try current.withLock { handles in
            var next = handles
            change(&next)
            try Self.write(next, to: path)
            handles = next
        }
    }

    public static func read(from path: String) throws -> VMHandles {
        try JSONDecoder().decode(VMHandles.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }

    private static func write(_ handles: VMHandles, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(handles)
        let temp = path + ".tmp"
        guard FileManager.default.createFile(atPath: temp, contents: data, attributes: [.posixPermissions: 0o600]) else {
            throw VMControllerError.operationFailed("cannot write \(temp)")
        }
        guard rename(temp, path) == 0 else {
            throw VMControllerError.operationFailed("cannot rename \(temp): \(String(cString: strerror(errno)))")
        }
    }
}

import Synchronization
