import NIOCore

/// One frame of the stdio channel: `stream u32 | kind u8 | length u32` (big-endian), then
/// `length` bytes of payload.
///
/// - `data`: bytes of the stream; never more than the receiver's outstanding credit.
/// - `credit`: a 4-byte count: the receiver may now be sent that many more bytes.
/// - `eof`: the sender will send nothing more on this stream.
/// - `reset`: the receiver wants nothing more; the sender drops what it has.
/// - `hello`: stream 0; the sender is ready, and says who it is in the payload (text). The
///   guest agent sends it once it serves, so the host knows it may call without probing.
public struct MuxFrame: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        case data = 0
        case credit = 1
        case eof = 2
        case reset = 3
        case hello = 4
    }

    public static let headerLength = 9
    /// Largest payload a frame may carry; larger data is split by the sender.
    public static let maxPayload = 1 << 20

    public var stream: UInt32
    public var kind: Kind
    public var payload: ByteBuffer

    public init(stream: UInt32, kind: Kind, payload: ByteBuffer = ByteBuffer()) {
        self.stream = stream
        self.kind = kind
        self.payload = payload
    }

    static func credit(stream: UInt32, bytes: Int) -> MuxFrame {
        var payload = ByteBuffer()
        payload.writeInteger(UInt32(clamping: bytes))
        return MuxFrame(stream: stream, kind: .credit, payload: payload)
    }

    func encode(into buffer: inout ByteBuffer) {
        buffer.writeInteger(stream)
        buffer.writeInteger(kind.rawValue)
        buffer.writeInteger(UInt32(payload.readableBytes))
        var payload = payload
        buffer.writeBuffer(&payload)
    }
}

/// Errors of the stdio channel.
public enum MuxError: Error, Sendable, Equatable {
    /// The peer broke the framing or the flow-control rules.
    case protocolViolation(String)
    /// The connection closed.
    case closed
    /// The receiver reset the stream.
    case reset
}

/// Splits the byte stream into `MuxFrame`s; malformed input is a `MuxError.protocolViolation`.
struct MuxFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = MuxFrame

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard buffer.readableBytes >= MuxFrame.headerLength,
              let stream = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self),
              let rawKind = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt8.self),
              let length = buffer.getInteger(at: buffer.readerIndex + 5, as: UInt32.self)
        else { return .needMoreData }
        guard let kind = MuxFrame.Kind(rawValue: rawKind) else {
            throw MuxError.protocolViolation("unknown frame kind \(rawKind)")
        }
        guard length <= MuxFrame.maxPayload else {
            throw MuxError.protocolViolation("frame of \(length) bytes exceeds \(MuxFrame.maxPayload)")
        }
        guard buffer.readableBytes >= MuxFrame.headerLength + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: MuxFrame.headerLength)
        guard let payload = buffer.readSlice(length: Int(length)) else { return .needMoreData }
        if kind == .credit, length != 4 { throw MuxError.protocolViolation("credit frame of \(length) bytes") }
        context.fireChannelRead(wrapInboundOut(MuxFrame(stream: stream, kind: kind, payload: payload)))
        return .continue
    }
}
