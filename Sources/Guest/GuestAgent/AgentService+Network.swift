import AgentAPI
import SwiftProtobuf
import TTRPC

extension AgentService {
    public func configureInterface(_ request: Skiff_Agent_V1_ConfigureInterfaceRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_ConfigureInterfaceResponse {
        // The NIC's driver loads with the first interface configured.
        await modulesReady(ModuleLoader.networkModules)
        let name = try await network.configure(request, reaper: reaper)
        return .with { $0.name = name }
    }
}
