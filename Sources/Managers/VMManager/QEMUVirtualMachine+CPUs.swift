import SkiffSupport
/// vCPU hot-add. A VM built with `maxVCPUs` starts with `vcpus` of them plugged and the rest
/// as empty slots that QEMU lists in `query-hotpluggable-cpus`; adding one is a `device_add`
/// of the slot's CPU type with the slot's topology properties. The guest sees an ACPI
/// hot-plug and registers the CPU offline: bringing it online is the guest agent's job.
extension QEMUVirtualMachine {
    /// One vCPU slot as QEMU lists it.
    struct CPUSlot {
        var type: String
        var properties: [String: JSONValue]
        var plugged: Bool
        var id: String { "cpu-" + ["socket-id", "core-id", "thread-id"].map { properties[$0]?.intValue.map(String.init) ?? "0" }.joined(separator: "-") }
    }

    func cpuSlots() async throws(VMManagerError) -> [CPUSlot] {
        guard let entries = try await execute("query-hotpluggable-cpus").arrayValue else {
            throw .qmp(errorClass: "UnexpectedReply", description: "query-hotpluggable-cpus did not return a list")
        }
        return entries.compactMap { entry in
            guard let type = entry["type"]?.stringValue, case let .object(properties)? = entry["props"] else { return nil }
            return CPUSlot(type: type, properties: properties, plugged: entry["qom-path"] != nil)
        }
    }

    /// vCPUs plugged now.
    public func vcpuCount() async throws(VMManagerError) -> Int {
        try await cpuSlots().filter(\.plugged).count
    }

    /// Hot-adds vCPUs until `count` are plugged. vCPUs only grow: asking for fewer than are
    /// plugged, or for more than the VM's maximum, is refused.
    public func setVCPUs(_ count: Int) async throws(VMManagerError) {
        let slots = try await cpuSlots()
        let plugged = slots.filter(\.plugged).count
        guard count >= plugged else {
            throw .invalidConfiguration("vCPUs can only grow: \(plugged) are plugged, \(count) asked")
        }
        guard count <= slots.count else {
            throw .invalidConfiguration("VM \(document.id) can have at most \(slots.count) vCPUs, \(count) asked")
        }
        // Lowest topology first, so vCPUs come in the order the guest numbers them.
        let free = slots.filter { !$0.plugged }.sorted { a, b in
            let key = { (s: CPUSlot) in ["socket-id", "core-id", "thread-id"].map { s.properties[$0]?.intValue ?? 0 } }
            return key(a).lexicographicallyPrecedes(key(b))
        }
        for slot in free.prefix(count - plugged) {
            var arguments = slot.properties
            arguments["driver"] = .string(slot.type)
            arguments["id"] = .string(slot.id)
            try await execute("device_add", arguments)
        }
    }
}
