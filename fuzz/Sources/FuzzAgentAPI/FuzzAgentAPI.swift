import AgentAPI
@testable import GuestAgent
import SwiftProtobuf

/// The agent's request types, in the order the first input byte picks them.
private let requestTypes: [any (SwiftProtobuf.Message & Equatable).Type] = [
    Skiff_Agent_V1_PingRequest.self, Skiff_Agent_V1_GuestInfoRequest.self, Skiff_Agent_V1_CreateProcessRequest.self,
    Skiff_Agent_V1_SignalProcessRequest.self, Skiff_Agent_V1_WaitProcessRequest.self, Skiff_Agent_V1_ResizeProcessRequest.self,
    Skiff_Agent_V1_CloseStdinRequest.self, Skiff_Agent_V1_DeleteProcessRequest.self, Skiff_Agent_V1_MountRequest.self,
    Skiff_Agent_V1_UnmountRequest.self, Skiff_Agent_V1_OnlineCPUsRequest.self, Skiff_Agent_V1_SyncWithHostRequest.self,
    Skiff_Agent_V1_DumpStacksRequest.self, Skiff_Agent_V1_ContainerRequest.self, Skiff_Agent_V1_CreateContainerRequest.self,
    Skiff_Agent_V1_ExecProcessRequest.self, Skiff_Agent_V1_SignalContainerRequest.self, Skiff_Agent_V1_UpdateContainerRequest.self,
    Skiff_Agent_V1_ConfigureInterfaceRequest.self, Skiff_Agent_V1_MountSCSIDiskRequest.self, Skiff_Agent_V1_WaitPCIDeviceRequest.self,
    Skiff_Agent_V1_MountOverlayRequest.self,
]

/// Decodes `bytes` as `type` and checks it round-trips: what decodes must encode, and decode
/// again to the same message.
private func roundTrip<M: SwiftProtobuf.Message & Equatable>(_ type: M.Type, _ bytes: [UInt8]) -> M? {
    guard let message = try? M(serializedBytes: bytes) else { return nil }
    guard let encoded: [UInt8] = try? message.serializedBytes() else { preconditionFailure("\(M.self) decodes but does not encode") }
    precondition((try? M(serializedBytes: encoded)) == message, "\(M.self) does not round-trip")
    return message
}

/// An id the agent accepts is one crun cannot read as an option or a path.
private func checkContainerID(_ id: String) {
    guard (try? AgentService.validate(containerID: id)) != nil else { return }
    precondition(!id.hasPrefix("-") && !id.contains("/") && id != "." && id != "..", "the agent accepted \(id.debugDescription)")
}

/// libFuzzer entry: the first byte picks a request type of the agent's API, the rest is its
/// payload as the host (or anything that reaches the agent's port) could send it. What decodes
/// goes through the agent's own checks of its fields: container ids and CIDR addresses. Nothing may crash or hang.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAgentAPI(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: start, count: count)
    guard let first = input.first else { return 0 }
    let bytes = Array(input.dropFirst())
    let type = requestTypes[Int(first) % requestTypes.count]
    guard let message = roundTrip(type, bytes) else { return 0 }
    switch message {
    case let request as Skiff_Agent_V1_CreateContainerRequest:
        checkContainerID(request.containerID)
    case let request as Skiff_Agent_V1_ContainerRequest:
        checkContainerID(request.containerID)
    case let request as Skiff_Agent_V1_ConfigureInterfaceRequest:
        for address in request.addresses { _ = NetworkConfig.isCIDR(address) }
    default:
        break
    }
    return 0
}
