import SkiffSupport

/// What the vPCI controller needs of the host: a PCI device hot-added on a free PCIe root port
/// (QMP `device_add` of `driver` with `properties`), which answers with the guest's address of
/// that root port; and the device removed again (`device_del`, waiting for DEVICE_DELETED).
public protocol VPCIHost: Sendable {
    func addPCIDevice(id: String, driver: String, properties: [String: JSONValue]) async throws -> String
    func removePCIDevice(id: String) async throws
}

/// What it needs of the guest: the device found behind its root port, with a driver bound
/// (`driverOverride`, when not empty: that one).
public protocol VPCIGuest: Sendable {
    func waitPCIDevice(rootPort: String, driverOverride: String, timeout: Duration) async throws -> GuestPCIDevice
}

/// A PCI device as the guest sees it: its address (`0000:01:00.0`), ids and bound driver.
public struct GuestPCIDevice: Equatable, Sendable {
    /// The VFIO group of a device bound to vfio-pci in the guest: the guest's IOMMU group
    /// number and the numbers of its node /dev/vfio/GROUP.
    public struct VFIOGroup: Equatable, Sendable {
        public var group: UInt32
        public var major: UInt32
        public var minor: UInt32
        public init(group: UInt32, major: UInt32, minor: UInt32) {
            self.group = group
            self.major = major
            self.minor = minor
        }
    }

    public var address: String
    public var vendor: UInt32
    public var device: UInt32
    public var driver: String
    /// Set when `driver` is vfio-pci.
    public var vfioGroup: VFIOGroup?
    public init(address: String, vendor: UInt32, device: UInt32, driver: String, vfioGroup: VFIOGroup? = nil) {
        self.address = address
        self.vendor = vendor
        self.device = device
        self.driver = driver
        self.vfioGroup = vfioGroup
    }
}

/// PCI devices assigned to the pod's VM: the vPCI sub-controller (hcsshim's `device/vpci`
/// shape, Kata's VFIO hot-plug). The device is data: a QEMU driver and its properties
/// (`vfio-pci` with `host=BDF` for a host device; QEMU's emulated `edu` or `pci-testdev` in
/// tests), and an identity that says when two requests name the same device.
///
/// ## Usage
/// `reserve` (by identity, no I/O; the same device again shares the id and counts a reference)
/// → `addToVM` (hot-add on a free root port, then the guest waits until the device shows
/// behind that port and a driver binds) → `removeFromVM` (drops a reference; the last removes
/// the device from the VM).
///
/// ## States
/// | state | trigger | next |
/// |---|---|---|
/// | Reserved | host add ok | Assigned |
/// | Reserved | host add fails | Removed (the reservation goes with the last removeFromVM) |
/// | Assigned | guest sees it, driver bound | Ready |
/// | Assigned | guest wait fails or times out | AssignedInvalid (still on the host: removal unplugs it) |
/// | Ready, AssignedInvalid | last removeFromVM, host removal ok | Removed, then forgotten |
/// | Ready, AssignedInvalid | host removal fails | unchanged (a retry removes again) |
///
/// ## Retry and idempotency
/// `addToVM` of a Ready device returns it; of an AssignedInvalid one waits in the guest again.
/// Each device is recorded in the VM's handles file before the host is asked (QEMU's devices
/// go with QEMU; the record says what the pod held). The root ports are the VM's hot-plug slots;
/// NICs share them, and no free port is a clear error.
public actor VPCIController {
    public struct DeviceID: Hashable, Sendable {
        public let value: Int
        public init(value: Int) { self.value = value }
    }

    /// A device to assign: what QEMU adds, and what makes two requests the same device.
    public struct Device: Equatable, Sendable {
        /// The host device's identity, such as its PCI address `0000:3b:00.0`.
        public var identity: String
        public var driver: String
        public var properties: [String: JSONValue]
        /// The guest driver to bind it to (empty: whichever binds by itself).
        public var guestDriver: String
        public init(identity: String, driver: String, properties: [String: JSONValue] = [:], guestDriver: String = "") {
            self.identity = identity
            self.driver = driver
            self.properties = properties
            self.guestDriver = guestDriver
        }
    }

    public enum State: String, Sendable {
        case reserved = "Reserved", assigned = "Assigned", ready = "Ready", assignedInvalid = "AssignedInvalid", removed = "Removed"
    }

    /// A device the VM holds, for diagnostics.
    public struct Assignment: Equatable, Sendable {
        public var id: DeviceID
        public var identity: String
        public var driver: String
        public var state: State
        public var references: Int
        public var guest: GuestPCIDevice?
        public init(id: DeviceID, identity: String, driver: String, state: State, references: Int, guest: GuestPCIDevice?) {
            self.id = id
            self.identity = identity
            self.driver = driver
            self.state = state
            self.references = references
            self.guest = guest
        }
    }

    struct Entry {
        var device: Device
        var references = 1
        var state = State.reserved
        /// The guest's address of the root port the device is on, once added.
        var rootPort: String?
        var guest: GuestPCIDevice?
        var qemuID: String
    }

    private let host: any VPCIHost
    private var guest: (any VPCIGuest)?
    private let handles: HandlesFile?
    private let guestTimeout: Duration
    private var entries: [DeviceID: Entry] = [:]
    private var nextID = 0
    private let changes = AsyncMutex()

    /// `guestTimeout`: how long the guest may take to see the device and bind a driver.
    public init(host: any VPCIHost, handles: HandlesFile?, guestTimeout: Duration = .seconds(10)) {
        self.host = host
        self.handles = handles
        self.guestTimeout = guestTimeout
    }

    public func attach(guest: (any VPCIGuest)?) {
        self.guest = guest
    }

    /// Reserves `device`: the same identity again shares the id (InvalidArgument if it names
    /// another driver or properties). No I/O.
    public func reserve(_ device: Device) throws(VMControllerError) -> DeviceID {
        guard !device.identity.isEmpty, !device.driver.isEmpty else { throw .invalidArgument("a PCI device needs an identity and a QEMU driver") }
        if let (id, entry) = entries.first(where: { $0.value.device.identity == device.identity && $0.value.state != .removed }) {
            guard entry.device == device else { throw .invalidArgument("PCI device \(device.identity) is already assigned with another driver") }
            entries[id]?.references += 1
            return id
        }
        let id = DeviceID(value: nextID)
        nextID += 1
        entries[id] = Entry(device: device, qemuID: "vpci\(id.value)")
        return id
    }

    /// Adds the device to the VM and waits until the guest has it with a driver bound; what
    /// the guest sees. OperationFailed when the host refuses it (no free root port among
    /// them) or the guest does not see it in time.
    public func addToVM(_ id: DeviceID) async throws(VMControllerError) -> GuestPCIDevice {
        try await changes.withLock { () async throws(VMControllerError) -> GuestPCIDevice in
            guard let entry = entries[id] else { throw .notFound("no PCI device \(id.value)") }
            guard let guest else { throw .wrongState(operation: "assigning a PCI device", state: .created) }
            if entry.state == .ready, let seen = entry.guest { return seen }
            guard entry.state != .removed else { throw .operationFailed("PCI device \(entry.device.identity) could not be added; remove it and reserve again") }
            var rootPort = entry.rootPort ?? ""
            if entry.state == .reserved {
                do {
                    try handles?.update { $0.pciDevices = ($0.pciDevices ?? []) + [entry.device.identity] }
                    rootPort = try await host.addPCIDevice(id: entry.qemuID, driver: entry.device.driver, properties: entry.device.properties)
                } catch {
                    entries[id]?.state = .removed
                    throw .operationFailed("adding PCI device \(entry.device.identity) to the VM: \(error)")
                }
                entries[id]?.state = .assigned
                entries[id]?.rootPort = rootPort
            }
            do {
                let seen = try await guest.waitPCIDevice(rootPort: rootPort, driverOverride: entry.device.guestDriver, timeout: guestTimeout)
                entries[id]?.state = .ready
                entries[id]?.guest = seen
                return seen
            } catch {
                entries[id]?.state = .assignedInvalid
                throw .operationFailed("PCI device \(entry.device.identity) did not come up in the guest behind \(rootPort): \(error)")
            }
        }
    }

    /// Drops a reference; the last removes the device from the VM (see the table).
    public func removeFromVM(_ id: DeviceID) async throws(VMControllerError) {
        try await changes.withLock { () async throws(VMControllerError) in
            guard let entry = entries[id] else { throw .notFound("no PCI device \(id.value)") }
            if entry.references > 1 {
                entries[id]?.references -= 1
                return
            }
            if entry.state == .assigned || entry.state == .ready || entry.state == .assignedInvalid {
                do { try await host.removePCIDevice(id: entry.qemuID) } catch {
                    throw .operationFailed("removing PCI device \(entry.device.identity) from the VM: \(error)")
                }
            }
            try? handles?.update { handles in
                if let index = handles.pciDevices?.firstIndex(of: entry.device.identity) { handles.pciDevices?.remove(at: index) }
            }
            entries[id] = nil
        }
    }

    /// The VM is gone: every device went with it. Forgets them all.
    public func releaseAll() {
        entries = [:]
        guest = nil
        try? handles?.update { $0.pciDevices = [] }
    }

    /// The devices the VM holds, in reservation order.
    public var assignments: [Assignment] {
        entries.sorted { $0.key.value < $1.key.value }.map { id, entry in
            Assignment(id: id, identity: entry.device.identity, driver: entry.device.driver, state: entry.state,
                       references: entry.references, guest: entry.state == .ready ? entry.guest : nil)
        }
    }
}
