import Foundation
import Synchronization
import Testing
@testable import VMController

/// The host side of a pod's network, in memory: each step recorded, any step failing on demand.
final class FakeNetworkHost: NetworkHost, Sendable {
    let interfacesInNamespace: [PodInterface]
    let log = Mutex<[String]>([])
    let failing = Mutex<Set<String>>([])
    let openFDs = Mutex<Int>(0)

    init(_ interfaces: [PodInterface]) { interfacesInNamespace = interfaces }

    private func step(_ what: String) throws {
        log.withLock { $0.append(what) }
        if failing.withLock({ $0.contains(what) }) { throw VMControllerError.operationFailed("injected: \(what)") }
    }
    var steps: [String] { log.withLock { $0 } }

    func interfaces(in netns: String) async throws -> [PodInterface] {
        try step("list \(netns)")
        return interfacesInNamespace
    }
    func openTap(in netns: String, name: String) throws -> Int32 {
        try step("tap \(name)")
        openFDs.withLock { $0 += 1 }
        return open("/dev/null", O_RDONLY)
    }
    func mirror(in netns: String, veth: String, tap: String, mac: String, mtu: Int) async throws { try step("mirror \(veth)") }
    func unmirror(in netns: String, veth: String) async throws { try step("unmirror \(veth)") }
    func addNIC(id: String, tapFD: Int32, mac: String) async throws { try step("add \(id)") }
    func removeNIC(id: String) async throws { try step("remove \(id)") }
}

final class FakeNetworkGuest: NetworkGuest, Sendable {
    let configured = Mutex<[String]>([])
    func configureInterface(mac: String, mtu: Int, addresses: [String], routes: [PodRoute], timeout: Duration) async throws -> String {
        configured.withLock { $0.append("\(mac) \(mtu) \(addresses.joined(separator: ",")) \(routes.map(\.destination).joined(separator: ","))") }
        return "eth\(configured.withLock { $0.count } - 1)"
    }
}

@Suite struct NetworkControllerTests {
    static let pod = [
        PodInterface(name: "eth0", mac: "0a:58:0a:58:00:05", mtu: 1450, addresses: ["10.88.0.5/16"],
                     routes: [PodRoute(destination: "default", gateway: "10.88.0.1")]),
        PodInterface(name: "net1", mac: "0a:58:0a:59:00:05", mtu: 1500, addresses: ["10.89.0.5/24"], routes: []),
    ]

    private func handles() throws -> (HandlesFile, String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("skiff-net-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return (try HandlesFile(path: dir + "/handles.json", initial: VMHandles(vmID: "v", processName: "p", pidFile: dir + "/pid")), dir)
    }

    @Test func everyInterfaceIsMirroredIntoTheVMAndConfiguredInTheGuest() async throws {
        let (file, dir) = try handles()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let host = FakeNetworkHost(Self.pod), guest = FakeNetworkGuest()
        let network = NetworkController(host: host, handles: file)
        await network.attach(guest: guest)
        try await network.setUp(netns: "/var/run/netns/cni-1")
        #expect(await network.state == .configured)
        #expect(host.steps == ["list /var/run/netns/cni-1", "tap skiff-tap0", "mirror eth0", "add nic0",
                               "tap skiff-tap1", "mirror net1", "add nic1"])
        #expect(guest.configured.withLock { $0 } == ["0a:58:0a:58:00:05 1450 10.88.0.5/16 default", "0a:58:0a:59:00:05 1500 10.89.0.5/24 "])
        #expect(try HandlesFile.read(from: file.path).mirrors == [NetworkMirror(netns: "/var/run/netns/cni-1", device: "eth0"),
                                                                   NetworkMirror(netns: "/var/run/netns/cni-1", device: "net1")])
        // The same namespace again is done; another one is refused.
        try await network.setUp(netns: "/var/run/netns/cni-1")
        await #expect(throws: VMControllerError.self) { try await network.setUp(netns: "/var/run/netns/other") }
        #expect(await network.tearDown(vmGone: false).isEmpty)
        #expect(host.steps.suffix(4) == ["remove nic1", "unmirror net1", "remove nic0", "unmirror eth0"], "guest side first, per NIC")
        #expect(try HandlesFile.read(from: file.path).mirrors == [])
        #expect(await network.state == .tornDown)
    }

    @Test func aSetupFailingHalfWayIsInvalidAndTearDownUndoesWhatWasMade() async throws {
        let (file, dir) = try handles()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let host = FakeNetworkHost(Self.pod)
        host.failing.withLock { _ = $0.insert("add nic1") }
        let network = NetworkController(host: host, handles: file)
        await network.attach(guest: FakeNetworkGuest())
        await #expect(throws: VMControllerError.self) { try await network.setUp(netns: "/n") }
        #expect(await network.state == .invalid)
        #expect(await network.tearDown(vmGone: false).isEmpty)
        #expect(host.steps.suffix(3) == ["unmirror net1", "remove nic0", "unmirror eth0"], "nic1 never reached the VM")
        #expect(try HandlesFile.read(from: file.path).mirrors == [])
    }

    @Test func aFailedTeardownIsRetriedAndAVMThatIsGoneIsNotAsked() async throws {
        let host = FakeNetworkHost([Self.pod[0]])
        let network = NetworkController(host: host, handles: nil)
        await network.attach(guest: FakeNetworkGuest())
        try await network.setUp(netns: "/n")
        host.failing.withLock { _ = $0.insert("unmirror eth0") }
        let failures = await network.tearDown(vmGone: true)
        #expect(failures.count == 1 && failures[0].contains("eth0"))
        #expect(await network.state == .invalid)
        #expect(!host.steps.contains("remove nic0"), "the VM is gone: nothing to unplug")
        host.failing.withLock { $0.removeAll() }
        #expect(await network.tearDown(vmGone: true).isEmpty)
        #expect(await network.state == .tornDown)
        #expect(host.steps.filter { $0 == "unmirror eth0" }.count == 2)
    }

    @Test func setupNeedsAGuest() async throws {
        let network = NetworkController(host: FakeNetworkHost(Self.pod), handles: nil)
        await #expect(throws: VMControllerError.self) { try await network.setUp(netns: "/n") }
        #expect(await network.state == .notConfigured)
    }
}
