import Glibc
import FoundationEssentials
import GuestManager
import TTRPC
import VMManager

extension GuestConnection: GuestSession {
    public var channels: AgentChannels? {
        AgentChannels(agent: agent, stdio: stdio, nextStreamID: { [self] in nextStreamID() })
    }

    public func run(_ args: [String], id: String, stdin: [UInt8]) async throws -> GuestCommandResult {
        let result: CommandResult = try await run(args, id: id, stdin: stdin)
        return GuestCommandResult(exitStatus: result.exitStatus, stdout: result.stdout, stderr: result.stderr)
    }

    public func dumpStacks() async throws -> String {
        try await agent.dumpStacks(.init()).stacks
    }

    public func onlineCPUs(wanted: Int, timeout: Duration) async throws -> Int {
        let milliseconds = timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000
        let answer = try await agent.onlineCPUs(.with {
            $0.wanted = UInt32(clamping: wanted)
            $0.timeoutMs = UInt32(clamping: milliseconds)
        }, options: TTRPCCallOptions(timeout: timeout + .seconds(5)))
        return Int(answer.online)
    }

    public func syncWithHost() async throws {
        // The system generator: getrandom(2), a cryptographically secure source.
        var generator = SystemRandomNumberGenerator()
        let entropy = (0..<64).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        _ = try await agent.syncWithHost(.with {
            $0.realtimeUnixNanos = Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
            $0.entropy = Data(entropy)
        })
    }

    public func mount(source: String, target: String, fstype: String, options: [String]) async throws {
        _ = try await agent.mount(.with {
            $0.source = source
            $0.target = target
            $0.fstype = fstype
            $0.options = options
        })
    }

    public func configureInterface(mac: String, mtu: Int, addresses: [String], routes: [PodRoute], timeout: Duration) async throws -> String {
        let milliseconds = timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000
        return try await agent.configureInterface(.with {
            $0.mac = mac
            $0.mtu = UInt32(clamping: mtu)
            $0.addresses = addresses
            $0.routes = routes.map { route in .with { $0.destination = route.destination; $0.gateway = route.gateway } }
            $0.timeoutMs = UInt32(clamping: milliseconds)
        }, options: TTRPCCallOptions(timeout: timeout + .seconds(10))).name
    }

    public func mountSCSIDisk(controller: Int, lun: Int, path: String, fstype: String, options: [String], readOnly: Bool) async throws -> GuestBlockDevice {
        let answer = try await agent.mountSCSIDisk(.with {
            $0.disk = .with { $0.controller = UInt32(controller); $0.lun = UInt32(lun); $0.timeoutMs = 10_000 }
            $0.path = path
            $0.fstype = fstype
            $0.options = options
            $0.readOnly = readOnly
        }, options: TTRPCCallOptions(timeout: .seconds(70)))
        return GuestBlockDevice(path: "/dev/" + answer.device, major: answer.major, minor: answer.minor)
    }

    public func waitPCIDevice(rootPort: String, driverOverride: String, timeout: Duration) async throws -> GuestPCIDevice {
        let answer = try await agent.waitPCIDevice(.with {
            $0.rootPort = rootPort
            $0.driverOverride = driverOverride
            $0.timeoutMs = UInt32(clamping: timeout.components.seconds * 1000)
        }, options: TTRPCCallOptions(timeout: timeout + .seconds(10)))
        return GuestPCIDevice(address: answer.address, vendor: answer.vendor, device: answer.device, driver: answer.driver,
                              vfioGroup: answer.hasVfioGroup ? .init(group: answer.vfioGroup.group, major: answer.vfioGroup.major,
                                                                      minor: answer.vfioGroup.minor) : nil)
    }

    public func ejectSCSIDisk(controller: Int, lun: Int) async throws {
        _ = try await agent.ejectSCSIDisk(.with { $0.controller = UInt32(controller); $0.lun = UInt32(lun) })
    }

    public func unmount(target: String) async throws {
        _ = try await agent.unmount(.with {
            $0.target = target
            $0.remove = true
        })
    }
}

/// Connects through the VM's virtio-serial (or vsock) sockets, as `QEMUCommandLine` laid them out.
public struct AgentSocketConnector: GuestAgentConnector {
    public init() {}

    public func connect(document: VMDocument, timeout: Duration, vmExit: @escaping @Sendable () async -> String?) async throws -> any GuestSession {
        guard case let .virtioSerial(control, stdio) = document.agentChannel else {
            throw VMControllerError.invalidArgument("vsock agent channels are not supported on this host")
        }
        return try await GuestConnection.connect(
            controlSocket: control.socketPath, stdioSocket: stdio.socketPath, timeout: timeout,
            watch: .init(consoleTail: { logTail(document.consoleLog) }, vmExit: vmExit))
    }
}
