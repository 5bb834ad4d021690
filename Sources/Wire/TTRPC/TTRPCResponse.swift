#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import FoundationEssentials
import Glibc
#endif
import NIOCore

/// A response frame's payload as the client reads it: the answer's payload, or the status the
/// call failed with. The fuzzer drives this same path.
public enum TTRPCResponse {
    public static func decode(_ buffer: ByteBuffer) -> Result<Data, TTRPCStatus> {
        let response: Ttrpc_Response
        do {
            response = try Ttrpc_Response(buffer: buffer)
        } catch {
            return .failure(TTRPCStatus(.internal, "ttrpc: cannot decode response: \(error)"))
        }
        if response.hasStatus, response.status.code != 0 {
            return .failure(TTRPCStatus(wire: response.status))
        }
        return .success(response.payload)
    }
}
