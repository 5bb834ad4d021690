#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import SwiftProtobuf
import TTRPC

/// Skiff's implementation of the `ttrpc.peer.v1.Peer` reference service, the one containerd's
/// Go ttrpc serves in `ttrpc-peer serve`; interop tests and the benchmark serve it.
public struct PeerService: Ttrpc_Peer_V1_PeerService {
    public init() {}

    public func echo(_ request: Google_Protobuf_BytesValue, context: TTRPCServerContext) async throws -> Google_Protobuf_BytesValue {
        request
    }

    /// Fails with the status given as "CODE:MESSAGE".
    public func fail(_ request: Google_Protobuf_StringValue, context: TTRPCServerContext) async throws -> Google_Protobuf_Empty {
        let parts = request.value.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard let code = Int32(parts[0]) else {
            throw TTRPCStatus(.invalidArgument, "want CODE:MESSAGE, got \(request.value)")
        }
        throw TTRPCStatus(TTRPCStatus.Code(rawValue: code), parts.count == 2 ? String(parts[1]) : "")
    }

    /// Sleeps for the given milliseconds; the server cancels the sleep at the call's deadline,
    /// and the call then answers DeadlineExceeded.
    public func sleep(_ request: Google_Protobuf_Int64Value, context: TTRPCServerContext) async throws -> Google_Protobuf_Empty {
        try await Task.sleep(for: .milliseconds(request.value))
        return Google_Protobuf_Empty()
    }

    /// The request metadata as sorted "key=value" lines.
    public func metadata(_ request: Google_Protobuf_Empty, context: TTRPCServerContext) async throws -> Google_Protobuf_StringValue {
        let lines = context.metadata.pairs.map { "\($0.key)=\($0.value)" }.sorted()
        return Google_Protobuf_StringValue(lines.joined(separator: "\n"))
    }
}
