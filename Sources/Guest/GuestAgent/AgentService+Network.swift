import AgentAPI
import SwiftProtobuf
import TTRPC

extension AgentService {
    public func configureInterface(_ request: Skiff_Agent_V1_ConfigureInterfaceRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_ConfigureInterfaceResponse {
        let name = try await network.configure(request, reaper: reaper)
        return .with { $0.name = name }
    }
}
