import AgentAPI
import Glibc
import SkiffSupport
import StdioMux
import VMManager

/// What the VM controller needs of a VM's host side; `QEMUVirtualMachine` provides it, and
/// tests substitute fakes that fail on demand.
public protocol VMHost: Sendable {
    func start(timeout: Duration) async throws
    /// Returns when the VM process has exited.
    func wait() async throws -> ExitStatus
    /// Stops the VM process (gracefully, then by force).
    func terminate() async throws -> ExitStatus
    /// Drops the control connection (QMP).
    func close() async
    func hostStats() async throws -> VMHostStats
    func setMemoryTarget(bytes: Int) async throws
    /// Hot-adds vCPUs until `count` are plugged (refused: fewer, or more than the maximum).
    func setVCPUs(_ count: Int) async throws
    /// Hot-adds a virtio NIC on an open tap descriptor, with the MAC address `mac`.
    func addNetworkInterface(id: String, tapFD: Int32, mac: String) async throws
    /// Unplugs a NIC added so, once the guest let it go.
    func removeNetworkInterface(id: String) async throws
    /// Attaches a disk image as a SCSI disk at `controller`/`lun` (target 0) under `id`.
    func attachDisk(id: String, path: String, readOnly: Bool, controller: Int, lun: Int) async throws
    /// Unplugs a disk attached so (once the guest let it go) and closes its image.
    func detachDisk(id: String) async throws
    /// Hot-adds a PCI device of QEMU `driver` with `properties` on a free root port; the
    /// guest's address of that port.
    func addPCIDevice(id: String, driver: String, properties: [String: JSONValue]) async throws -> String
    /// Unplugs a PCI device added so, once the guest let it go.
    func removePCIDevice(id: String) async throws
    var processID: pid_t? { get async }
    /// How the last start went (booted, or a copy of a template).
    var startPath: StartPath { get async }
}

extension VMHost {
    public var startPath: StartPath { get async { .booted } }
}

/// Connects to the guest agent of a booting VM.
public protocol GuestAgentConnector: Sendable {
    func connect(document: VMDocument, timeout: Duration, vmExit: @escaping @Sendable () async -> String?) async throws -> any GuestSession
}

/// The guest agent's API and process stdio (both wire-level), which the service layer drives
/// containers over while the VM runs.
public struct AgentChannels: Sendable {
    public let agent: Skiff_Agent_V1_AgentClient
    public let stdio: StdioMux
    /// A fresh stream id on `stdio`, for one of a process's streams.
    public let nextStreamID: @Sendable () -> UInt32

    public init(agent: Skiff_Agent_V1_AgentClient, stdio: StdioMux, nextStreamID: @escaping @Sendable () -> UInt32) {
        self.agent = agent
        self.stdio = stdio
        self.nextStreamID = nextStreamID
    }
}

/// What the controller (and its Plan9 sub-controller) asks of a connected guest agent.
public protocol GuestSession: Plan9Guest, NetworkGuest, SCSIGuest, VPCIGuest {
    /// The agent's channels for the service layer (nil for a guest that has none, as fakes).
    var channels: AgentChannels? { get }
    func run(_ args: [String], id: String, stdin: [UInt8]) async throws -> GuestCommandResult
    func dumpStacks() async throws -> String
    /// Onlines hot-added CPUs until `wanted` are online or `timeout` passes; returns how many are.
    func onlineCPUs(wanted: Int, timeout: Duration) async throws -> Int
    /// Sets the guest's wall clock to the host's and gives it fresh entropy (a copy of a
    /// template has the template's clock and random state).
    func syncWithHost() async throws
    func close() async throws
}

/// How a command run in the VM ended and what it printed.
public struct GuestCommandResult: Sendable, Equatable {
    public var exitStatus: UInt32
    public var stdout: [UInt8]
    public var stderr: [UInt8]
    public init(exitStatus: UInt32, stdout: [UInt8], stderr: [UInt8]) {
        self.exitStatus = exitStatus
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// What the controller reports in Stats.
public struct VMStats: Sendable, Equatable {
    public var host: VMHostStats
}
