import Glibc
import SkiffSupport
import VMManager

extension QEMUVirtualMachine: VMHost {
    public func terminate() async throws -> ExitStatus {
        try await terminate(grace: .seconds(3))
    }

    public var processID: pid_t? { pid }

    public func attachDisk(id: String, path: String, readOnly: Bool, controller: Int, lun: Int) async throws {
        try await addBlockNode(name: "node-\(id)", path: path, readOnly: readOnly)
        FaultStop.duringSCSIAttach.reach()
        do {
            try await addSCSIDisk(id: id, node: "node-\(id)", controller: controller, target: 0, lun: lun)
        } catch {
            try? await removeBlockNode(name: "node-\(id)")
            throw error
        }
    }

    public func detachDisk(id: String) async throws {
        try await removeDevice(id: id)
        try await removeBlockNode(name: "node-\(id)")
    }

    public func addPCIDevice(id: String, driver: String, properties: [String: JSONValue]) async throws -> String {
        let slot = try await addPCIDevice(id: id, driver: driver, properties: properties) as Int
        do {
            return try await rootPortAddress(slot: slot)
        } catch {
            try? await removeDevice(id: id)
            throw error
        }
    }

    public func removePCIDevice(id: String) async throws {
        try await removeDevice(id: id)
    }

    public func removeNetworkInterface(id: String) async throws {
        try await removeNetworkInterface(id: id, timeout: .seconds(10))
    }
}
