import Foundation
import SkiffSupport
import Glibc
import Synchronization
@testable import VMController
import VMManager

struct FakeFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A VM host that records calls and fails where told. Its "process" exits when `exit` is
/// called (or when terminated).
final class FakeHost: VMHost, @unchecked Sendable {
    struct Calls { var start = 0; var terminate = 0; var close = 0 }
    let lock = NSLock()
    var calls = Calls()
    var failStart = false
    var failTerminate = false
    var startDelay: Duration = .zero
    private var exited: ExitStatus?
    private var waiters: [CheckedContinuation<ExitStatus, Never>] = []

    func start(timeout: Duration) async throws {
        lock.withLock { calls.start += 1 }
        if startDelay > .zero { try await Task.sleep(for: startDelay) }
        if lock.withLock({ failStart }) { throw FakeFailure("QEMU refused to start") }
    }

    func wait() async throws -> ExitStatus {
        await withCheckedContinuation { continuation in
            let done: ExitStatus? = lock.withLock {
                if let exited { return exited }
                waiters.append(continuation)
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    /// The VM process ends by itself.
    func exit(_ status: ExitStatus) {
        let waiters: [CheckedContinuation<ExitStatus, Never>] = lock.withLock {
            guard exited == nil else { return [] }
            exited = status
            defer { self.waiters.removeAll() }
            return self.waiters
        }
        waiters.forEach { $0.resume(returning: status) }
    }

    func terminate() async throws -> ExitStatus {
        lock.withLock { calls.terminate += 1 }
        if lock.withLock({ failTerminate }) { throw FakeFailure("kill failed") }
        exit(.signaled(9))
        return .signaled(9)
    }

    func close() async { lock.withLock { calls.close += 1 } }
    func hostStats() async throws -> VMHostStats { VMHostStats(residentBytes: 100 << 20, cpuTime: .seconds(1)) }
    func setMemoryTarget(bytes: Int) async throws {}
    func addNetworkInterface(id: String, tapFD: Int32, mac: String) async throws {}
    func removeNetworkInterface(id: String) async throws {}
    func attachDisk(id: String, path: String, readOnly: Bool, controller: Int, lun: Int) async throws {}
    func detachDisk(id: String) async throws {}
    func addPCIDevice(id: String, driver: String, properties: [String: JSONValue]) async throws -> String { "0000:00:03.0" }
    func removePCIDevice(id: String) async throws {}
    var vcpus = 1
    var maxVCPUs = 4
    func setVCPUs(_ count: Int) async throws {
        try lock.withLock {
            guard count >= vcpus, count <= maxVCPUs else { throw VMManagerError.invalidConfiguration("vCPUs \(vcpus) to \(maxVCPUs) only") }
            vcpus = count
        }
    }
    var processID: pid_t? { 4242 }
}

/// A guest that records mounts and closes and fails where told.
final class FakeGuest: GuestSession, @unchecked Sendable {
    let lock = NSLock()
    var mounts: [(source: String, target: String, options: [String])] = []
    var unmounts: [String] = []
    var closes = 0
    var failClose = false
    var failMount = false
    var failUnmount = false

    func mount(source: String, target: String, fstype: String, options: [String]) async throws {
        try lock.withLock {
            if failMount { throw FakeFailure("guest mount failed") }
            mounts.append((source, target, options))
        }
    }

    func unmount(target: String) async throws {
        try lock.withLock {
            if failUnmount { throw FakeFailure("guest unmount failed") }
            unmounts.append(target)
        }
    }

    func run(_ args: [String], id: String, stdin: [UInt8]) async throws -> GuestCommandResult {
        GuestCommandResult(exitStatus: 0, stdout: Array(args.joined(separator: " ").utf8), stderr: [])
    }

    func dumpStacks() async throws -> String { "fake stacks" }
    var channels: AgentChannels? { nil }
    func mountSCSIDisk(controller: Int, lun: Int, path: String, fstype: String, options: [String], readOnly: Bool) async throws -> GuestBlockDevice {
        GuestBlockDevice(path: "/dev/sd\(Character(UnicodeScalar(UInt8(97 + lun))))", major: 8, minor: UInt32(16 * lun))
    }
    func ejectSCSIDisk(controller: Int, lun: Int) async throws {}
    func waitPCIDevice(rootPort: String, driverOverride: String, timeout: Duration) async throws -> GuestPCIDevice {
        GuestPCIDevice(address: "0000:01:00.0", vendor: 0x1234, device: 0x11e8, driver: driverOverride)
    }
    func configureInterface(mac: String, mtu: Int, addresses: [String], routes: [PodRoute], timeout: Duration) async throws -> String { "eth0" }

    /// CPUs the guest manages to bring online, whatever is asked (nil: all that are asked).
    var onlineLimit: Int?
    func onlineCPUs(wanted: Int, timeout: Duration) async throws -> Int {
        lock.withLock { min(wanted, onlineLimit ?? wanted) }
    }

    /// SyncWithHost calls, and whether the next fails.
    var syncs = 0
    var failSync = false
    func syncWithHost() async throws {
        try lock.withLock {
            if failSync { throw FakeFailure("guest sync failed") }
            syncs += 1
        }
    }

    func close() async throws {
        try lock.withLock {
            closes += 1
            if failClose { throw FakeFailure("guest close failed") }
        }
    }
}

final class FakeConnector: GuestAgentConnector, @unchecked Sendable {
    let guest = FakeGuest()
    var fail = false

    func connect(document: VMDocument, timeout: Duration, vmExit: @escaping @Sendable () async -> String?) async throws -> any GuestSession {
        if fail { throw FakeFailure("agent never answered") }
        return guest
    }
}

/// Bind mounts recorded instead of made; unbind fails while `failUnbind` is set.
final class FakeMounter: HostMounter, @unchecked Sendable {
    let lock = NSLock()
    var bound: [String: (source: String, readOnly: Bool)] = [:]
    var failBind = false
    var failUnbind = false

    func bind(source: String, target: String, readOnly: Bool) throws {
        try lock.withLock {
            if failBind { throw FakeFailure("bind failed") }
            bound[target] = (source, readOnly)
        }
    }

    func unbind(target: String) throws {
        try lock.withLock {
            if failUnbind { throw FakeFailure("unbind failed") }
            bound[target] = nil
        }
    }
}

/// A controller over fakes, with a state directory in a fresh temp dir.
struct Rig {
    let host = FakeHost()
    let connector = FakeConnector()
    let mounter = FakeMounter()
    let controller: VMController
    let document: VMDocument
    let root: String

    init(share: Bool = true) throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("skiff-vmc-\(UUID().uuidString.prefix(8))").path
        let state = root + "/vm"
        var builder = VMBuilder(id: "vm1", stateDirectory: state, kernel: "/k", initrd: "/i")
        if share { builder = builder.share(hostPath: state + "/share", tag: "skiffshare") }
        document = try builder.build()
        let host = self.host
        controller = VMController(id: "vm1", stateDirectory: state, makeHost: { _ in host },
                                  connector: connector, mounter: mounter)
    }

    func running() async throws -> Rig {
        try await controller.createVM(document)
        try await controller.startVM()
        return self
    }

    func removeRoot() { try? FileManager.default.removeItem(atPath: root) }
}
