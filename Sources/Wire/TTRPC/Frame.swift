import NIOCore

/// One ttrpc message as it travels: a 10-byte big-endian header
/// (`length u32 | stream id u32 | type u8 | flags u8`) followed by `length` bytes of payload.
public struct TTRPCFrame: Sendable, Equatable {
    /// The kinds of frame ttrpc defines. Other values are protocol errors.
    public enum Kind: UInt8, Sendable {
        case request = 1
        case response = 2
        case data = 3
    }

    /// Header length in bytes.
    public static let headerLength = 10
    /// The largest payload either side accepts (4 MiB, as containerd's ttrpc).
    public static let maxPayloadLength = 4 << 20

    public var streamID: UInt32
    /// The raw type byte; see `Kind`.
    public var type: UInt8
    public var flags: UInt8
    public var payload: ByteBuffer

    public init(streamID: UInt32, kind: Kind, flags: UInt8 = 0, payload: ByteBuffer) {
        self.init(streamID: streamID, type: kind.rawValue, flags: flags, payload: payload)
    }

    public init(streamID: UInt32, type: UInt8, flags: UInt8 = 0, payload: ByteBuffer) {
        self.streamID = streamID
        self.type = type
        self.flags = flags
        self.payload = payload
    }

    public var kind: Kind? { Kind(rawValue: type) }
}

/// What the frame decoder hands up the pipeline.
public enum TTRPCInboundFrame: Sendable, Equatable {
    /// A complete frame within the size limit.
    case frame(TTRPCFrame)
    /// A frame whose declared payload exceeds the limit. Its bytes are skipped without being
    /// buffered; the receiver answers the stream with ResourceExhausted and carries on.
    case oversized(streamID: UInt32, type: UInt8, length: UInt32)
}
