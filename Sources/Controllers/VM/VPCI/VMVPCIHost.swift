import SkiffSupport

/// The VM's host half as the vPCI controller's host.
struct VMVPCIHost: VPCIHost {
    let vm: any VMHost

    func addPCIDevice(id: String, driver: String, properties: [String: JSONValue]) async throws -> String {
        try await vm.addPCIDevice(id: id, driver: driver, properties: properties)
    }

    func removePCIDevice(id: String) async throws {
        try await vm.removePCIDevice(id: id)
    }
}
