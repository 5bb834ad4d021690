import FoundationEssentials
import Glibc
import Logging
import SkiffSupport

/// The pod's network, joined to its VM: the network sub-controller of one VM (one per pod).
///
/// ## What it does
/// The pod's network namespace on the host (the CRI plugin's, which CNI gave a veth, an
/// address and routes) stays where it is. For each of its interfaces the controller makes a
/// tap inside that namespace, redirects every frame between the veth and the tap both ways
/// with tc (an ingress qdisc and a match-all `mirred egress redirect` filter on each, as
/// Kata's tcfilter mode does), hands the tap's descriptor to QEMU and hot-adds a virtio NIC
/// with the veth's MAC; then the guest agent gives that NIC the veth's MTU, addresses and
/// routes in the VM's network namespace, which the pod's containers share. The pod's IP is
/// then the VM's.
///
/// ## States
/// | state | trigger | next |
/// |---|---|---|
/// | NotConfigured | setUp ok | Configured |
/// | NotConfigured | setUp fails | Invalid (what was made is recorded; tearDown undoes it) |
/// | Configured | setUp of the same namespace | Configured (no-op) |
/// | Configured, Invalid | tearDown ok | TornDown |
/// | Configured, Invalid | tearDown fails | Invalid (a retry resumes) |
/// | TornDown | — | terminal |
///
/// ## Retry and idempotency
/// Each veth's mirror is recorded in the VM's handles file before tc is touched, so `shim
/// delete` removes the filters after a SIGKILL; the taps need nothing (they exist only while
/// QEMU holds them). Teardown goes guest first (the NIC out of the VM), then host (the tc
/// mirror), carries on past failures, joins them, and tolerates a VM or agent already gone.
public actor NetworkController {
    public enum State: String, Sendable, Equatable { case notConfigured = "NotConfigured", configured = "Configured", invalid = "Invalid", tornDown = "TornDown" }

    /// One interface mirrored into the VM.
    struct NIC: Equatable {
        var id: String
        var veth: String
        var tap: String
        var mac: String
        var inVM = false
        var mirrored = false
    }

    private let host: any NetworkHost
    private let handles: HandlesFile?
    private let logger: Logger
    private var guest: (any NetworkGuest)?
    public private(set) var state: State = .notConfigured
    public private(set) var netns: String?
    private(set) var nics: [NIC] = []
    private let changes = AsyncMutex()
    /// How long a hot-added NIC may take to show in the guest.
    static let nicTimeout: Duration = .seconds(10)

    public init(host: any NetworkHost, handles: HandlesFile?, logger: Logger = Logger(label: "skiff.network")) {
        self.host = host
        self.handles = handles
        self.logger = logger
    }

    /// The guest to configure NICs in, once the VM runs (nil once it is gone).
    public func attach(guest: (any NetworkGuest)?) {
        self.guest = guest
    }

    /// The interfaces mirrored into the VM.
    public var interfaceCount: Int { nics.count }

    /// Joins the pod's network namespace at `netns` (a path such as /var/run/netns/cni-…) to
    /// the VM. Throws `.operationFailed` with the step that failed; the controller is then
    /// Invalid and `tearDown` undoes what was made.
    public func setUp(netns: String) async throws(VMControllerError) {
        try await changes.withLock { () async throws(VMControllerError) in
            if state == .configured, netns == self.netns { return }
            guard state == .notConfigured else { throw .invalidArgument("the pod's network is \(state.rawValue); it is set up once") }
            guard let guest else { throw .wrongState(operation: "network setup", state: .created) }
            self.netns = netns
            do {
                let interfaces = try await host.interfaces(in: netns)
                for (index, interface) in interfaces.enumerated() {
                    try await add(interface, index: index, netns: netns, guest: guest)
                }
            } catch {
                state = .invalid
                throw error as? VMControllerError ?? .operationFailed("pod network \(netns): \(error)")
            }
            state = .configured
            logger.info("pod network \(netns): \(nics.count) interface(s) in the VM")
        }
    }

    private func add(_ interface: PodInterface, index: Int, netns: String, guest: any NetworkGuest) async throws {
        var nic = NIC(id: "nic\(index)", veth: interface.name, tap: "skiff-tap\(index)", mac: interface.mac)
        nics.append(nic)
        let tapFD = try host.openTap(in: netns, name: nic.tap)
        defer { close(tapFD) }
        // Recorded before tc is touched: shim delete undoes it from the file alone.
        try handles?.update { $0.mirrors = ($0.mirrors ?? []) + [NetworkMirror(netns: netns, device: interface.name)] }
        nic.mirrored = true
        nics[index] = nic
        try await host.mirror(in: netns, veth: interface.name, tap: nic.tap, mac: interface.mac, mtu: interface.mtu)
        FaultStop.duringNetworkSetup.reach()
        try await host.addNIC(id: nic.id, tapFD: tapFD, mac: interface.mac)
        nic.inVM = true
        nics[index] = nic
        _ = try await guest.configureInterface(mac: interface.mac, mtu: interface.mtu, addresses: interface.addresses,
                                               routes: interface.routes, timeout: Self.nicTimeout)
    }

    /// Undoes the setup: each NIC out of the VM (skipped when the VM is gone), then each tc
    /// mirror. Returns the failures (none: TornDown); a later call retries what failed.
    public func tearDown(vmGone: Bool) async -> [String] {
        await changes.withLock {
            guard state != .tornDown else { return [] }
            var failures: [String] = []
            for index in nics.indices.reversed() {
                var nic = nics[index]
                if nic.inVM {
                    if vmGone {
                        nic.inVM = false
                    } else {
                        do {
                            try await host.removeNIC(id: nic.id)
                            nic.inVM = false
                        } catch {
                            failures.append("removing \(nic.id) from the VM: \(error)")
                        }
                    }
                }
                if nic.mirrored, let netns {
                    do {
                        try await host.unmirror(in: netns, veth: nic.veth)
                        nic.mirrored = false
                        try? handles?.update { $0.mirrors = $0.mirrors?.filter { $0 != NetworkMirror(netns: netns, device: nic.veth) } }
                    } catch {
                        failures.append("removing the tc mirror of \(nic.veth): \(error)")
                    }
                }
                nics[index] = nic
            }
            nics.removeAll { !$0.inVM && !$0.mirrored }
            state = failures.isEmpty ? .tornDown : .invalid
            return failures
        }
    }
}
