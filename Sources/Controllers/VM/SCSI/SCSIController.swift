import FoundationEssentials
import Glibc
import Logging
import SkiffSupport

/// What the SCSI controller needs of the host: a disk image attached to and detached from the
/// VM (QMP `blockdev-add` + `device_add scsi-hd`; `device_del` waiting for DEVICE_DELETED, then
/// `blockdev-del`).
public protocol SCSIHost: Sendable {
    func attachDisk(id: String, path: String, readOnly: Bool, controller: Int, lun: Int) async throws
    func detachDisk(id: String) async throws
}

/// A disk's block device in the guest: `/dev/NAME` and its device numbers there.
public struct GuestBlockDevice: Equatable, Sendable {
    public var path: String
    public var major: UInt32
    public var minor: UInt32
    public init(path: String, major: UInt32, minor: UInt32) {
        self.path = path
        self.major = major
        self.minor = minor
    }
}

/// What it needs of the guest: the disk found (and mounted, for a non-empty `path`),
/// unmounted, and let go.
public protocol SCSIGuest: Sendable {
    func mountSCSIDisk(controller: Int, lun: Int, path: String, fstype: String, options: [String], readOnly: Bool) async throws -> GuestBlockDevice
    func unmount(target: String) async throws
    func ejectSCSIDisk(controller: Int, lun: Int) async throws
}

/// The pod's disks on the VM's virtio-scsi controllers: the SCSI sub-controller (hcsshim's
/// `controller/device/scsi` shape). A slot is controller × LUN (target 0).
///
/// ## Usage
/// `reserve` (a slot, no I/O; the same image again shares the reservation) → `mapToGuest`
/// (attach on the host, mount in the guest; its guest path) → `unmapFromGuest` (at the last
/// reference: unmount, eject in the guest, detach on the host). A disk reserved with
/// `MountConfig.raw` is not mounted: `mapDeviceToGuest` gives its block device in the guest,
/// for a container that gets it as a device node. The host path is a file (a disk image) or a
/// host block device.
///
/// ## Disk states
/// | state | trigger | next |
/// |---|---|---|
/// | Reserved | attach ok | Attached |
/// | Reserved | attach fails | Detached (the reservation is dropped by unmap) |
/// | Attached | guest eject ok | Ejected |
/// | Ejected | host detach ok | Detached |
/// | Ejected | host detach fails | Ejected (a retry detaches only) |
///
/// ## Mount states (the disk's one mount)
/// | state | trigger | next |
/// |---|---|---|
/// | Reserved | guest mount ok (raw: its device found) | Mounted |
/// | Reserved | guest mount fails (raw: no device) | Reserved (unmap still ejects and detaches) |
/// | Mounted | guest unmount ok (raw: nothing to do), last reference | Unmounted |
///
/// ## Retry and idempotency
/// `mapToGuest` of a mapped disk returns its path. A failed `unmapFromGuest` leaves the disk in
/// the state it reached, and the next call resumes there; the reservation goes last. Every
/// attachment is recorded in the VM's handles file before the host is asked (QEMU's own
/// attachments go with QEMU; the record says which images the pod held).
public actor SCSIController {
    public struct DiskID: Hashable, Sendable {
        public let value: Int
        public init(value: Int) { self.value = value }
    }

    /// How the guest mounts a disk: its filesystem type and mount(8)-style options.
    public struct MountConfig: Equatable, Sendable {
        public var fstype: String
        public var options: [String]
        public init(fstype: String, options: [String] = []) {
            self.fstype = fstype
            self.options = options
        }
        /// Not mounted: the guest only finds the block device.
        public static let raw = MountConfig(fstype: "")
        public var isRaw: Bool { fstype.isEmpty }
    }

    enum DiskState: String { case reserved = "Reserved", attached = "Attached", ejected = "Ejected", detached = "Detached" }
    enum MountState: String { case reserved = "Reserved", mounted = "Mounted", unmounted = "Unmounted" }

    struct Disk {
        var hostPath: String
        var readOnly: Bool
        var mount: MountConfig
        var controller: Int
        var lun: Int
        var references = 1
        var state = DiskState.reserved
        var mountState = MountState.reserved
        var device: GuestBlockDevice?
        var deviceID: String { "scsi\(controller)-\(lun)" }
    }

    public static let guestMountRoot = "/run/skiff/disks"
    private let controllers: Int
    private let lunsPerController: Int
    private let host: any SCSIHost
    private var guest: (any SCSIGuest)?
    private let handles: HandlesFile?
    private var disks: [DiskID: Disk] = [:]
    private var nextID = 0
    private let changes = AsyncMutex()

    public init(controllers: Int, lunsPerController: Int = 64, host: any SCSIHost, handles: HandlesFile?) {
        self.controllers = controllers
        self.lunsPerController = lunsPerController
        self.host = host
        self.handles = handles
    }

    public func attach(guest: (any SCSIGuest)?) {
        self.guest = guest
    }

    /// Where the disk is mounted in the guest.
    public nonisolated func guestPath(_ id: DiskID) -> String { "\(Self.guestMountRoot)/\(id.value)" }

    /// Reserves a slot for the image at `hostPath`. The same image with the same mode and mount
    /// shares the reservation; with another, InvalidArgument; no free slot, InvalidArgument too.
    public func reserve(hostPath: String, readOnly: Bool, mount: MountConfig) throws(VMControllerError) -> DiskID {
        guard hostPath.hasPrefix("/") else { throw .invalidArgument("disk image \(hostPath) must be an absolute path") }
        // A disk already on its way out (unmounted, ejected) is not shared again.
        if let (id, disk) = disks.first(where: { $0.value.hostPath == hostPath && $0.value.mountState != .unmounted
                                                  && ($0.value.state == .reserved || $0.value.state == .attached) }) {
            guard disk.readOnly == readOnly, disk.mount == mount else {
                throw .invalidArgument("disk image \(hostPath) is already attached with another mode or mount")
            }
            disks[id]?.references += 1
            return id
        }
        let taken = Set(disks.values.map { $0.controller * lunsPerController + $0.lun })
        guard let slot = (0..<(controllers * lunsPerController)).first(where: { !taken.contains($0) }) else {
            throw .invalidArgument("all \(controllers * lunsPerController) SCSI slots are taken")
        }
        let id = DiskID(value: nextID)
        nextID += 1
        disks[id] = Disk(hostPath: hostPath, readOnly: readOnly, mount: mount,
                         controller: slot / lunsPerController, lun: slot % lunsPerController)
        return id
    }

    /// Attaches and mounts the disk; its guest path (its device's path for a raw disk).
    public func mapToGuest(_ id: DiskID) async throws(VMControllerError) -> String {
        try await mapDeviceToGuest(id).mountPath
    }

    /// Attaches the disk and finds it in the guest (mounted unless raw): where it is mounted,
    /// and its block device there.
    public func mapDeviceToGuest(_ id: DiskID) async throws(VMControllerError) -> (mountPath: String, device: GuestBlockDevice) {
        try await changes.withLock { () async throws(VMControllerError) -> (mountPath: String, device: GuestBlockDevice) in
            guard var disk = disks[id] else { throw .notFound("no disk \(id.value)") }
            guard let guest else { throw .wrongState(operation: "mapping a disk", state: .created) }
            if disk.state == .reserved {
                do {
                    try handles?.update { $0.disks = ($0.disks ?? []) + [disk.hostPath] }
                    try await host.attachDisk(id: disk.deviceID, path: disk.hostPath, readOnly: disk.readOnly,
                                              controller: disk.controller, lun: disk.lun)
                } catch {
                    // Field by field: a reserve during the await may have changed the count.
                    disks[id]?.state = .detached
                    throw .operationFailed("attaching \(disk.hostPath): \(error)")
                }
                disk.state = .attached
                disks[id]?.state = .attached
            }
            guard disk.state == .attached else { throw .operationFailed("disk \(disk.hostPath) is \(disk.state.rawValue)") }
            if disk.mountState != .mounted || disk.device == nil {
                let device: GuestBlockDevice
                do {
                    device = try await guest.mountSCSIDisk(controller: disk.controller, lun: disk.lun, path: disk.mount.isRaw ? "" : guestPath(id),
                                                           fstype: disk.mount.fstype, options: disk.mount.options, readOnly: disk.readOnly)
                } catch {
                    throw .operationFailed("\(disk.mount.isRaw ? "finding" : "mounting") \(disk.hostPath) in the guest: \(error)")
                }
                disk.mountState = .mounted
                disk.device = device
                disks[id]?.mountState = .mounted
                disks[id]?.device = device
            }
            guard let device = disk.device else { throw .operationFailed("disk \(disk.hostPath) has no device in the guest") }
            return (disk.mount.isRaw ? device.path : guestPath(id), device)
        }
    }

    /// Drops one reference; the last unmounts, ejects and detaches (see the tables).
    public func unmapFromGuest(_ id: DiskID) async throws(VMControllerError) {
        try await changes.withLock { () async throws(VMControllerError) in
            guard var disk = disks[id] else { throw .notFound("no disk \(id.value)") }
            if disk.references > 1 {
                disks[id]?.references -= 1
                return
            }
            // Field by field below: reserves may come in during each await.
            if disk.mountState == .mounted {
                if let guest, !disk.mount.isRaw { try await step("unmounting \(disk.hostPath)") { try await guest.unmount(target: guestPath(id)) } }
                disk.mountState = .unmounted
                disks[id]?.mountState = .unmounted
            }
            if disk.state == .attached {
                if let guest { try await step("ejecting \(disk.hostPath)") { try await guest.ejectSCSIDisk(controller: disk.controller, lun: disk.lun) } }
                disk.state = .ejected
                disks[id]?.state = .ejected
            }
            if disk.state == .ejected {
                try await step("detaching \(disk.hostPath)") { try await host.detachDisk(id: disk.deviceID) }
                disk.state = .detached
                disks[id]?.state = .detached
            }
            try? handles?.update { handles in
                if let index = handles.disks?.firstIndex(of: disk.hostPath) { handles.disks?.remove(at: index) }
            }
            disks[id] = nil
        }
    }

    /// The VM is gone: every disk went with it. Forgets them all.
    public func releaseAll() {
        disks = [:]
        guest = nil
        try? handles?.update { $0.disks = [] }
    }

    /// Disks reserved now, for diagnostics and tests.
    public var count: Int { disks.count }

    /// The states of a disk, for tests.
    func states(_ id: DiskID) -> (disk: DiskState, mount: MountState, references: Int)? {
        disks[id].map { ($0.state, $0.mountState, $0.references) }
    }

    private func step(_ what: String, _ body: () async throws -> Void) async throws(VMControllerError) {
        do { try await body() } catch { throw .operationFailed("\(what): \(error)") }
    }
}
