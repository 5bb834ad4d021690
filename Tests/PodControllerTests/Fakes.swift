import AgentAPI
import ContainerdAPI
import Foundation
import Logging
@testable import PodController
import SkiffSupport
import SwiftProtobuf
import Synchronization
import TTRPC
import VMController

/// A failure a fake was told to produce.
struct Injected: Error, CustomStringConvertible {
    var what: String
    var description: String { "injected failure: \(what)" }
}

/// Events in the order they were published.
final class RecordedEvents: TaskEvents, Sendable {
    private let list = Mutex<[(topic: String, event: any SwiftProtobuf.Message)]>([])
    func publish(topic: String, _ event: any SwiftProtobuf.Message) async {
        list.withLock { $0.append((topic, event)) }
    }
    var topics: [String] { list.withLock { $0.map(\.topic) } }
}

/// The agent, in memory: containers and processes with states, exits the test controls, and
/// a failure on demand for any call (by name, the Nth time or every time).
final class FakeGuest: PodGuest, Sendable {
    struct State {
        var containers: [String: String] = [:]  // id → created / running / paused
        var processes: [String: UInt32] = [:]   // process id → pid
        var exits: [String: GuestExit] = [:]
        var waiters: [String: [CheckedContinuation<GuestExit, any Error>]] = [:]
        var failures: [String: any Error] = [:]
        var calls: [String] = []
        var nextPid: UInt32 = 100
        var gone = false
    }
    let state = Mutex(State())

    /// `call` fails with `error` from now on (until `heal`).
    func fail(_ call: String, with error: any Error = Injected(what: "")) {
        state.withLock { $0.failures[call] = error }
    }
    func heal(_ call: String) { _ = state.withLock { $0.failures.removeValue(forKey: call) } }

    /// The VM went away: every call fails Unavailable, and every wait ends.
    func vanish() {
        let waiters = state.withLock { state -> [CheckedContinuation<GuestExit, any Error>] in
            state.gone = true
            defer { state.waiters = [:] }
            return state.waiters.values.flatMap { $0 }
        }
        waiters.forEach { $0.resume(throwing: TTRPCStatus(.unavailable, "ttrpc: closed")) }
    }

    var calls: [String] { state.withLock { $0.calls } }
    var containers: [String: String] { state.withLock { $0.containers } }
    var processes: [String: UInt32] { state.withLock { $0.processes } }

    private func enter(_ call: String) throws {
        try state.withLock { state in
            state.calls.append(call)
            if state.gone { throw TTRPCStatus(.unavailable, "ttrpc: closed") }
            if let failure = state.failures[call] { throw failure }
        }
    }

    /// The process ends with `status`; a waiter gets it at once.
    func exit(_ processID: String, status: UInt32, oomKilled: Bool = false) {
        let exit = GuestExit(status: status, exitedAtNs: 1_000_000_000, oomKilled: oomKilled)
        let waiters = state.withLock { state -> [CheckedContinuation<GuestExit, any Error>] in
            state.exits[processID] = exit
            return state.waiters.removeValue(forKey: processID) ?? []
        }
        waiters.forEach { $0.resume(returning: exit) }
    }

    func openStdio(stdin: String, stdout: String, stderr: String, terminal: Bool, deferStdin: Bool) throws(SkiffError) -> FifoIO {
        .unconnected()
    }

    func createContainer(id: String, processID: String, bundle: String, config: String, io: FifoIO, terminal: Bool) async throws -> UInt32 {
        try enter("createContainer")
        try enter("createContainer \(id)")
        return try state.withLock { state in
            guard state.containers[id] == nil else { throw TTRPCStatus(.alreadyExists, "container \(id) already exists") }
            state.containers[id] = "created"
            state.nextPid += 1
            state.processes[processID] = state.nextPid
            return state.nextPid
        }
    }

    func startContainer(id: String) async throws {
        try enter("startContainer")
        state.withLock { $0.containers[id] = "running" }
    }

    func execProcess(containerID: String, processID: String, processSpec: String, io: FifoIO, terminal: Bool) async throws -> UInt32 {
        try enter("execProcess")
        return state.withLock { state in
            state.nextPid += 1
            state.processes[processID] = state.nextPid
            return state.nextPid
        }
    }

    func waitProcess(_ processID: String) async throws -> GuestExit {
        try enter("waitProcess")
        return try await withCheckedThrowingContinuation { continuation in
            let ready: Result<GuestExit, any Error>? = state.withLock { state in
                if state.gone { return .failure(TTRPCStatus(.unavailable, "ttrpc: closed")) }
                if let exit = state.exits[processID] { return .success(exit) }
                state.waiters[processID, default: []].append(continuation)
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }

    func deleteProcess(_ processID: String) async throws {
        try enter("deleteProcess")
        _ = state.withLock { $0.processes.removeValue(forKey: processID) }
    }

    func signalProcess(_ processID: String, signal: UInt32) async throws {
        try enter("signalProcess")
        if signal == 9 || signal == 15 { exit(processID, status: 128 + signal) }
    }

    func signalContainer(_ id: String, signal: UInt32) async throws {
        try enter("signalContainer")
        guard containers[id] != nil else { throw TTRPCStatus(.notFound, "container \(id) not found") }
    }

    func resizeProcess(_ processID: String, width: UInt32, height: UInt32) async throws { try enter("resizeProcess") }
    func pauseContainer(_ id: String) async throws { try enter("pauseContainer") }
    func resumeContainer(_ id: String) async throws { try enter("resumeContainer") }
    func containerStats(_ id: String) async throws -> Skiff_Agent_V1_ContainerStatsResponse {
        try enter("containerStats")
        return .with { $0.memoryUsageBytes = 4096; $0.pidsCurrent = 1 }
    }
    func updateContainer(_ request: Skiff_Agent_V1_UpdateContainerRequest) async throws { try enter("updateContainer") }
    func containerPids(_ id: String) async throws -> [UInt32] {
        try enter("containerPids")
        return [101, 102]
    }

    func deleteContainer(_ id: String) async throws {
        try enter("deleteContainer")
        let initWasWaiting = state.withLock { state -> Bool in
            let wasCreated = state.containers[id] == "created"
            state.containers[id] = nil
            return wasCreated
        }
        // crun delete --force ends an init still waiting for Start.
        if initWasWaiting { exit(id, status: 137) }
    }

    func openDiagStdio(stdin: String, stdout: String, stderr: String, terminal: Bool) throws(SkiffError) -> FifoIO { .unconnected() }
    func mountOverlay(lowers: [String], scratch: String, target: String) async throws { try enter("mountOverlay") }
    func unmount(path: String) async throws { try enter("unmount") }
    func runInVM(processID: String, args: [String], workdir: String, io: FifoIO, terminal: Bool, width: UInt32, height: UInt32) async throws {
        try enter("runInVM")
    }
    func mount(source: String, target: String, readOnly: Bool) async throws { try enter("mount") }
}

/// The Plan9 shares, in memory, failing on demand.
final class FakeShares: ContainerShares, Sendable {
    struct State {
        var mapped: [Int: String] = [:]
        var reserved: Set<Int> = []
        var next = 0
        var failMapAfter: Int?
        var failUnmap = false
    }
    let state = Mutex(State())

    /// Mapping fails once `count` shares are mapped.
    func failMap(after count: Int) { state.withLock { $0.failMapAfter = count } }
    func failUnmap(_ on: Bool) { state.withLock { $0.failUnmap = on } }
    var held: Int { state.withLock { $0.reserved.count } }

    func reserve(hostPath: String, readOnly: Bool) async throws -> Plan9Controller.ShareID {
        state.withLock { state in
            state.next += 1
            state.reserved.insert(state.next)
            state.mapped[state.next] = hostPath
            return Plan9Controller.ShareID(value: state.next)
        }
    }

    func mapToGuest(_ id: Plan9Controller.ShareID) async throws -> String {
        try state.withLock { state in
            if let limit = state.failMapAfter, state.reserved.count > limit { throw Injected(what: "map share") }
            return "/run/skiff/mounts/\(id.value)"
        }
    }

    func unmapFromGuest(_ id: Plan9Controller.ShareID) async throws {
        try state.withLock { state in
            if state.failUnmap { throw Injected(what: "unmap share") }
            state.reserved.remove(id.value)
        }
    }
}

/// Rootfs mounts, counted.
final class FakeRootfs: RootfsMounter, Sendable {
    let mounted = Mutex<Set<String>>([])
    func mount(_ mounts: [Containerd_Types_Mount], at target: String) throws(SkiffError) {
        if !mounts.isEmpty { mounted.withLock { _ = $0.insert(target) } }
    }
    func unmount(_ target: String) throws(SkiffError) { mounted.withLock { _ = $0.remove(target) } }
    var count: Int { mounted.withLock { $0.count } }
}

/// The VM, in memory: boots after a gate opens (so a test can hold it mid-boot), or fails.
final class FakeVM: PodVM, Sendable {
    let stateDirectory: String
    let guestAgent: FakeGuest
    let fakeShares: FakeShares
    let fakeDisks: FakeDisks
    struct State {
        var created = 0, started = 0, terminated = 0
        var running = false
        var failStart: (any Error)?
        var bootGate: CheckedContinuation<Void, Never>?
        var holdBoot = false
        var networks: [String] = []
        /// How many guest calls there were when the VM ended.
        var guestCallsAtEnd: Int?
        var ended = false
        var endWaiters: [CheckedContinuation<Void, Never>] = []
    }
    let state = Mutex(State())

    let fakeDevices = FakeDevices()

    init(stateDirectory: String, guest: FakeGuest = FakeGuest(), shares: FakeShares = FakeShares(), disks: FakeDisks = FakeDisks()) {
        self.stateDirectory = stateDirectory
        self.guestAgent = guest
        self.fakeShares = shares
        self.fakeDisks = disks
    }

    func createVM(options: VMOptions) async throws { state.withLock { $0.created += 1 } }

    func startVM(bootTimeout: Duration) async throws {
        let hold = state.withLock { $0.holdBoot }
        if hold { await withCheckedContinuation { c in state.withLock { $0.bootGate = c } } }
        try state.withLock { state in
            state.started += 1
            if let failure = state.failStart { throw failure }
            state.running = true
            state.ended = false
        }
    }

    /// Lets a held boot finish; true once there was one waiting.
    func releaseBoot() -> Bool {
        let gate = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let gate = state.bootGate else { return nil }
            state.holdBoot = false
            state.bootGate = nil
            return gate
        }
        gate?.resume()
        return gate != nil
    }

    func terminateVM() async throws {
        state.withLock { $0.terminated += 1 }
        end()
    }

    /// The VM ends by itself (QEMU killed): the agent goes with it, and waitTerminated returns.
    func end() {
        let calls = guestAgent.calls.count
        let waiters = state.withLock { state in
            state.running = false
            state.guestCallsAtEnd = state.guestCallsAtEnd ?? calls
            state.ended = true
            defer { state.endWaiters = [] }
            return state.endWaiters
        }
        guestAgent.vanish()  // the agent goes with the VM
        waiters.forEach { $0.resume() }
    }

    func setUpNetwork(netns: String) async throws { state.withLock { $0.networks.append(netns) } }
    func waitTerminated() async {
        await withCheckedContinuation { continuation in
            let ended = state.withLock { state in
                if !state.ended { state.endWaiters.append(continuation) }
                return state.ended
            }
            if ended { continuation.resume() }
        }
    }
    func guest() async -> (any PodGuest)? { state.withLock { $0.running } ? guestAgent : nil }
    func shares() async -> (any ContainerShares)? { state.withLock { $0.running } ? fakeShares : nil }
    func disks() async -> (any ContainerDisks)? { state.withLock { $0.running } ? fakeDisks : nil }
    func devices() async -> (any ContainerDevices)? { state.withLock { $0.running } ? fakeDevices : nil }
    func dumpStacks() async throws -> String { "fake" }
}

/// The VMs a pod made, in order.
final class VMList: Sendable {
    private let list = Mutex<[FakeVM]>([])
    func append(_ vm: FakeVM) { list.withLock { $0.append(vm) } }
    var count: Int { list.withLock { $0.count } }
    var last: FakeVM? { list.withLock { $0.last } }
}

/// The code of the SkiffError `body` throws; nil if it succeeds or throws something else.
func errorCode(_ body: () async throws -> Void) async -> SkiffError.Code? {
    do { try await body() } catch { return (error as? SkiffError)?.code }
    return nil
}

/// A bundle on disk with a spec, and a pod over fakes.
struct PodRig {
    let root: String
    let events = RecordedEvents()
    let rootfs = FakeRootfs()
    let vms = VMList()
    let pod: PodController
    /// Set on each VM the pod makes.
    let configure: @Sendable (FakeVM) -> Void

    /// `layers`: the layer cache's directory (default: one in the rig's root); `sysfs`: the
    /// host's sysfs as the pod sees it.
    init(layers: String? = nil, sysfs: String = "/sys", configure: @escaping @Sendable (FakeVM) -> Void = { _ in }) {
        root = "/tmp/skiff-pod-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let vms = self.vms
        let rootDir = root
        pod = PodController(events: events, logger: Logger(label: "test"), stateRoot: root + "/state", rootfs: rootfs,
                            layers: LayerCache(directory: layers ?? root + "/layers"), sysfs: sysfs) { id, state in
            let vm = FakeVM(stateDirectory: state)
            configure(vm)
            vms.append(vm)
            _ = rootDir
            return vm
        }
        self.configure = configure
    }

    var vm: FakeVM? { vms.last }

    /// A bundle for `id` whose spec runs `args`, with `binds` host directories bind-mounted.
    func bundle(_ id: String, args: [String] = ["sh"], binds: Int = 0, sandbox: String? = nil) throws -> Containerd_Task_V2_CreateTaskRequest {
        let path = "\(root)/\(id)"
        try FileManager.default.createDirectory(atPath: path + "/rootfs", withIntermediateDirectories: true)
        var mounts: [[String: Any]] = []
        for i in 0..<binds {
            let source = "\(root)/src-\(id)-\(i)"
            try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
            mounts.append(["destination": "/m\(i)", "type": "bind", "source": source, "options": ["rbind"]])
        }
        var spec: [String: Any] = ["ociVersion": "1.0.2", "process": ["args": args, "cwd": "/"], "root": ["path": "rootfs"],
                                   "mounts": mounts, "linux": ["namespaces": [["type": "pid"], ["type": "network"]]]]
        if let sandbox { spec["annotations"] = ["io.kubernetes.cri.sandbox-id": sandbox] }
        try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: path + "/config.json"))
        return .with {
            $0.id = id
            $0.bundle = path
            $0.rootfs = [.with { $0.type = "bind"; $0.source = "/tmp"; $0.options = ["rbind"] }]
        }
    }

    func cleanUp() { try? FileManager.default.removeItem(atPath: root) }
}
