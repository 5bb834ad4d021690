import Glibc
import VMManager

extension QEMUVirtualMachine: VMHost {
    public func terminate() async throws -> ExitStatus {
        try await terminate(grace: .seconds(3))
    }

    public var processID: pid_t? { pid }

    public func removeNetworkInterface(id: String) async throws {
        try await removeNetworkInterface(id: id, timeout: .seconds(10))
    }
}
