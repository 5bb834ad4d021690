import AgentAPI
import SwiftProtobuf
import TTRPC

extension AgentService {
    public func mountSCSIDisk(_ request: Skiff_Agent_V1_MountSCSIDiskRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_MountSCSIDiskResponse {
        // The disk's driver and filesystem may still be loading.
        await allModulesReadyWait()
        let device = try await disks.mount(request)
        return .with { $0.device = device }
    }

    public func ejectSCSIDisk(_ request: Skiff_Agent_V1_SCSIDiskAddress, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_Empty {
        try disks.eject(request)
        return .init()
    }
}
