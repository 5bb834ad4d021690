#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import FoundationEssentials
import Glibc
#endif
import NIOCore

/// A request frame's payload, decoded the way the server reads it: the target, the method's
/// own payload, the caller's timeout and the metadata. The fuzzer drives this same path.
public struct TTRPCRequest: Sendable {
    public var service: String
    public var method: String
    public var payload: Data
    /// The caller's `timeout_nano`, when positive.
    public var timeoutNanoseconds: Int64?
    public var metadata: TTRPCMetadata

    /// Decodes a request frame's payload; bytes that are not a `ttrpc.Request` are
    /// InvalidArgument, worded as containerd's server words it.
    public init(decoding buffer: ByteBuffer) throws(TTRPCStatus) {
        let wire: Ttrpc_Request
        do {
            wire = try Ttrpc_Request(buffer: buffer)
        } catch {
            throw TTRPCStatus(.invalidArgument, "unmarshal request error: \(error)")
        }
        service = wire.service
        method = wire.method
        payload = wire.payload
        timeoutNanoseconds = wire.timeoutNano > 0 ? wire.timeoutNano : nil
        metadata = TTRPCMetadata(wire: wire.metadata)
    }
}
