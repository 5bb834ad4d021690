import Glibc
import SkiffSupport
/// Hot-plug primitives as plain QMP operations. The sub-controllers (SCSI, vPCI, network)
/// decide slots and names; these only ask QEMU.
extension QEMUVirtualMachine {
    /// Opens a host file or block device as a block node (`blockdev-add`, raw format; QEMU's
    /// protocol driver is `file` for a file and `host_device` for a block device, which `file`
    /// refuses: docs/system/qemu-block-drivers, "Host device"). QEMU cannot see the path (its
    /// own mount namespace, QEMUConfinement): this process opens it, read-only or read-write,
    /// and hands the descriptor over in a file descriptor set of its own (`add-fd`), which the
    /// node opens as `/dev/fdset/N` (QEMU's qapi/misc.json). Throws `.startFailed` when the
    /// path cannot be opened, `.qmp` when QEMU refuses.
    public func addBlockNode(name: String, path: String, readOnly: Bool) async throws(VMManagerError) {
        guard let fdSocket = document.qmpFDSocket else { throw .invalidConfiguration("VM \(document.id) has no descriptor monitor") }
        let fd = open(path, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC)
        guard fd >= 0 else { throw .startFailed("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { Glibc.close(fd) }
        var info = stat()
        let isDevice = fstat(fd, &info) == 0 && info.st_mode & S_IFMT == S_IFBLK
        let set = nextFDSet
        nextFDSet += 1
        do {
            try await QMPDescriptorChannel.addToSet(fd, set: set, socket: fdSocket, then: "blockdev-add", [
                "driver": "raw", "node-name": .string(name), "read-only": .bool(readOnly),
                "file": ["driver": .string(isDevice ? "host_device" : "file"), "filename": .string("/dev/fdset/\(set)"), "read-only": .bool(readOnly)],
            ])
        } catch {
            // A refused node leaves no descriptor of the image in QEMU (the set may exist).
            _ = try? await execute("remove-fd", ["fdset-id": .integer(Int64(set))])
            throw error
        }
        nodeFDSets[name] = set
    }

    /// Removes a block node that no device uses any more (`blockdev-del`), and the descriptor
    /// set it was opened from (`remove-fd`).
    public func removeBlockNode(name: String) async throws(VMManagerError) {
        try await execute("blockdev-del", ["node-name": .string(name)])
        if let set = nodeFDSets.removeValue(forKey: name) {
            _ = try? await execute("remove-fd", ["fdset-id": .integer(Int64(set))])
        }
    }

    /// Attaches block node `node` as a SCSI disk on controller `controller` at target/LUN.
    /// A read-only node gives a write-protected disk.
    public func addSCSIDisk(id: String, node: String, controller: Int, target: Int, lun: Int) async throws(VMManagerError) {
        // A write the host cannot complete (its filesystem full: ENOSPC) or a failed read is
        // reported to the guest as an I/O error: QEMU's default for ENOSPC (`werror=enospc`)
        // would pause the whole VM, freezing every container of the pod (QEMU's
        // BlockdevOnError, qapi/block-core.json).
        try await execute("device_add", [
            "driver": "scsi-hd", "id": .string(id), "drive": .string(node),
            "bus": .string("scsi\(controller).0"), "scsi-id": .integer(Int64(target)), "lun": .integer(Int64(lun)),
            "werror": "report", "rerror": "report",
        ])
    }

    /// Hot-adds a PCI device of `driver` (for example `vfio-pci` with a `host` property) on a
    /// free hot-plug root port; that port's slot.
    @discardableResult
    public func addPCIDevice(id: String, driver: String, properties: [String: JSONValue] = [:]) async throws(VMManagerError) -> Int {
        var arguments = properties
        arguments["driver"] = .string(driver)
        arguments["id"] = .string(id)
        return try await addOnHotplugSlot(id: id, arguments)
    }

    /// The PCI address (`0000:00:03.0`) of hot-plug root port `slot`, as the guest has it:
    /// QMP `query-pci` reads it from the machine's configuration space (QEMU's qapi/pci.json).
    public func rootPortAddress(slot: Int) async throws(VMManagerError) -> String {
        let port = QEMUCommandLine.hotplugSlotID(slot)
        for bus in try await execute("query-pci").arrayValue ?? [] {
            for device in bus["devices"]?.arrayValue ?? [] where device["qdev_id"]?.stringValue == port {
                guard let number = bus["bus"]?.intValue, let slot = device["slot"]?.intValue, let function = device["function"]?.intValue else { continue }
                func hex(_ value: Int, _ width: Int) -> String {
                    let digits = String(value, radix: 16)
                    return String(repeating: "0", count: max(0, width - digits.count)) + digits
                }
                return "0000:\(hex(number, 2)):\(hex(slot, 2)).\(hex(function, 1))"
            }
        }
        throw .invalidConfiguration("no root port \(port) in query-pci")
    }

    /// `device_add` on the first free root port, which stays taken until `removeDevice`; its slot.
    @discardableResult
    private func addOnHotplugSlot(id: String, _ arguments: [String: JSONValue]) async throws(VMManagerError) -> Int {
        guard !hotplugSlots.contains(id) else { throw .invalidConfiguration("a device \(id) is already plugged") }
        guard let slot = hotplugSlots.firstIndex(of: nil) else {
            throw .invalidConfiguration("all \(hotplugSlots.count) PCI hot-plug slots are taken")
        }
        var arguments = arguments
        arguments["bus"] = .string(QEMUCommandLine.hotplugSlotID(slot))
        hotplugSlots[slot] = id
        do {
            try await execute("device_add", arguments)
        } catch {
            hotplugSlots[slot] = nil
            throw error
        }
        return slot
    }

    /// Hot-adds a virtio NIC on an open tap descriptor (made in the pod's network namespace,
    /// where QEMU itself is not): `getfd` passes it to QEMU and `netdev_add tap,fd=` takes it,
    /// on the descriptor monitor; then `device_add virtio-net-pci` on a free root port. QEMU
    /// keeps its own copy; the caller may close `tapFD` once this returns.
    public func addNetworkInterface(id: String, tapFD: Int32, mac: String) async throws(VMManagerError) {
        guard let fdSocket = document.qmpFDSocket else { throw .invalidConfiguration("VM \(document.id) has no descriptor monitor") }
        try await QMPDescriptorChannel.pass(tapFD, as: "fd-\(id)", socket: fdSocket, then: "netdev_add",
                                            ["type": "tap", "id": .string("net-\(id)"), "fd": .string("fd-\(id)"), "vhost": false])
        try await plugNIC(id: id, mac: mac)
    }

    /// `device_add virtio-net-pci` on the netdev `net-ID` just added; the netdev goes again if
    /// the device cannot be plugged.
    private func plugNIC(id: String, mac: String) async throws(VMManagerError) {
        do {
            try await addOnHotplugSlot(id: id, ["driver": "virtio-net-pci", "id": .string(id),
                                                 "netdev": .string("net-\(id)"), "mac": .string(mac)])
        } catch {
            _ = try? await execute("netdev_del", ["id": .string("net-\(id)")])
            throw error
        }
    }

    /// Removes a NIC added by `addNetworkInterface`, waiting for the guest to release it.
    public func removeNetworkInterface(id: String, timeout: Duration = .seconds(10)) async throws(VMManagerError) {
        try await removeDevice(id: id, timeout: timeout)
        try await execute("netdev_del", ["id": .string("net-\(id)")])
    }

    /// Unplugs a device and waits for QEMU's DEVICE_DELETED (the guest let it go).
    public func removeDevice(id: String, timeout: Duration = .seconds(10)) async throws(VMManagerError) {
        try await execute("device_del", ["id": .string(id)])
        try await waitForDeviceDeleted(id, timeout: timeout)
        if let slot = hotplugSlots.firstIndex(of: id) { hotplugSlots[slot] = nil }
    }

    /// Asks the guest, through the balloon, to give back memory down to `bytes`. Refused for a
    /// copy of a template: QEMU 7.2 discards a page of a file-backed RAM by punching a hole in
    /// the file, which for a copy is the template every copy maps.
    public func setMemoryTarget(bytes: Int) async throws(VMManagerError) {
        guard document.balloon else { throw .invalidConfiguration("VM \(document.id) has no balloon device") }
        guard !startPath.isCopy else {
            throw .invalidConfiguration("VM \(document.id) is a copy of a template: its memory cannot shrink through the balloon")
        }
        guard bytes > 0, bytes <= document.memoryMiB << 20 else {
            throw .invalidConfiguration("memory target \(bytes) must be 1 to \(document.memoryMiB << 20) bytes")
        }
        try await execute("balloon", ["value": .integer(Int64(bytes))])
    }

    /// The guest's current memory size as the balloon sees it.
    public func memoryActual() async throws(VMManagerError) -> Int {
        (try await execute("query-balloon"))["actual"]?.intValue ?? 0
    }
}
