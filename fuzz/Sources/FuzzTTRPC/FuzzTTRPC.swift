import NIOCore
import SwiftProtobuf
import TTRPC

/// libFuzzer entry: the input is a byte stream as a peer could send it. The first byte picks
/// how the stream is cut into reads and how small the size limit is; the rest goes through the
/// frame decoder read by read, and every request frame through the server's request decoding.
/// Response frames go through the client's response decoding. Nothing may crash, hang or
/// buffer more than the limit.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTTRPC(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: start, count: count)
    guard let control = input.first else { return 0 }
    let chunk = Int(control & 0x0F) + 1
    let limit = control & 0x10 != 0 ? 64 : TTRPCFrame.maxPayloadLength
    var decoder = TTRPCFrameDecoder(maxPayloadLength: limit)
    var buffer = ByteBuffer()
    var offset = 1
    while offset < input.count {
        let end = min(offset + chunk, input.count)
        buffer.writeBytes(UnsafeRawBufferPointer(rebasing: input[offset..<end]))
        offset = end
        while let inbound = decoder.next(from: &buffer) {
            precondition(buffer.readableBytes <= limit + TTRPCFrame.headerLength + chunk, "decoder buffered past the limit")
            guard case let .frame(frame) = inbound else { continue }
            precondition(frame.payload.readableBytes <= limit)
            switch frame.kind {
            case .request:
                if let request = try? TTRPCRequest(decoding: frame.payload) {
                    _ = request.metadata.first("containerd-namespace-ttrpc")
                    // A decoded request must encode again.
                    var reencoded = ByteBuffer()
                    TTRPCFrameEncoder.write(TTRPCFrame(streamID: frame.streamID, kind: .request, payload: frame.payload), to: &reencoded)
                    precondition(reencoded.readableBytes == frame.payload.readableBytes + TTRPCFrame.headerLength)
                }
            case .response:
                _ = TTRPCResponse.decode(frame.payload)
            case .data, nil:
                break
            }
        }
    }
    return 0
}
