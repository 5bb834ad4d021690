import NIOCore

/// Splits a byte stream into ttrpc frames. Partial reads are buffered until a frame is
/// complete; an oversized frame is reported as soon as its header arrives and its payload is
/// then discarded as it streams in, so a peer cannot make us buffer more than the limit.
public struct TTRPCFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = TTRPCInboundFrame

    private let maxPayloadLength: Int
    /// Bytes of an oversized frame still to skip.
    private var discarding = 0

    public init(maxPayloadLength: Int = TTRPCFrame.maxPayloadLength) {
        self.maxPayloadLength = maxPayloadLength
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let inbound = next(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(inbound))
        return .continue
    }

    public mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws -> DecodingState {
        // Whatever is left after the peer closed is an incomplete frame: drop it.
        while let inbound = next(from: &buffer) {
            context.fireChannelRead(Self.wrapInboundOut(inbound))
        }
        buffer.clear()
        return .needMoreData
    }

    /// Decodes the next frame from `buffer`, or returns nil when more bytes are needed.
    /// Exposed for the fuzzer and for tests; the pipeline goes through `decode`.
    public mutating func next(from buffer: inout ByteBuffer) -> TTRPCInboundFrame? {
        while discarding > 0 {
            let skip = min(discarding, buffer.readableBytes)
            guard skip > 0 else { return nil }
            buffer.moveReaderIndex(forwardBy: skip)
            discarding -= skip
        }
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self),
              buffer.readableBytes >= TTRPCFrame.headerLength
        else { return nil }
        let start = buffer.readerIndex
        guard let streamID = buffer.getInteger(at: start + 4, as: UInt32.self),
              let type = buffer.getInteger(at: start + 8, as: UInt8.self),
              let flags = buffer.getInteger(at: start + 9, as: UInt8.self)
        else { return nil }

        if Int(length) > maxPayloadLength {
            buffer.moveReaderIndex(forwardBy: TTRPCFrame.headerLength)
            discarding = Int(length)
            return .oversized(streamID: streamID, type: type, length: length)
        }
        guard buffer.readableBytes >= TTRPCFrame.headerLength + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: TTRPCFrame.headerLength)
        guard let payload = buffer.readSlice(length: Int(length)) else { return nil }
        return .frame(TTRPCFrame(streamID: streamID, type: type, flags: flags, payload: payload))
    }
}

/// Writes ttrpc frames: the 10-byte header, then the payload.
public struct TTRPCFrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = TTRPCFrame

    public init() {}

    public func encode(data frame: TTRPCFrame, out: inout ByteBuffer) throws {
        Self.write(frame, to: &out)
    }

    /// Appends `frame`, header first, to `out`.
    public static func write(_ frame: TTRPCFrame, to out: inout ByteBuffer) {
        out.reserveCapacity(minimumWritableBytes: TTRPCFrame.headerLength + frame.payload.readableBytes)
        out.writeInteger(UInt32(frame.payload.readableBytes))
        out.writeInteger(frame.streamID)
        out.writeInteger(frame.type)
        out.writeInteger(frame.flags)
        var payload = frame.payload
        out.writeBuffer(&payload)
    }
}
