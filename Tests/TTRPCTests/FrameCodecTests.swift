import NIOCore
import Testing
@testable import TTRPC

@Suite struct FrameCodecTests {
    private func encoded(_ frames: [TTRPCFrame]) -> ByteBuffer {
        var out = ByteBuffer()
        for frame in frames { TTRPCFrameEncoder.write(frame, to: &out) }
        return out
    }

    @Test func headerIsTenBigEndianBytesBeforeThePayload() {
        let bytes = encoded([TTRPCFrame(streamID: 0x0102_0304, kind: .response, flags: 0x7, payload: ByteBuffer(string: "hi"))])
        #expect(Array(bytes.readableBytesView) == [0, 0, 0, 2, 1, 2, 3, 4, 2, 7, UInt8(ascii: "h"), UInt8(ascii: "i")])
    }

    @Test func frameArrivingOneByteAtATimeDecodesOnceComplete() {
        let frame = TTRPCFrame(streamID: 5, kind: .request, payload: ByteBuffer(string: "payload"))
        let bytes = Array(encoded([frame]).readableBytesView)
        var decoder = TTRPCFrameDecoder()
        var buffer = ByteBuffer()
        var decoded: [TTRPCInboundFrame] = []
        for byte in bytes {
            buffer.writeInteger(byte)
            while let next = decoder.next(from: &buffer) { decoded.append(next) }
        }
        #expect(decoded == [.frame(frame)])
        #expect(buffer.readableBytes == 0)
    }

    @Test func severalFramesInOneReadAllDecodeInOrder() {
        let frames = (0..<5).map { TTRPCFrame(streamID: UInt32(2 * $0 + 1), kind: .request, payload: ByteBuffer(string: "f\($0)")) }
        var buffer = encoded(frames)
        var decoder = TTRPCFrameDecoder()
        var decoded: [TTRPCInboundFrame] = []
        while let next = decoder.next(from: &buffer) { decoded.append(next) }
        #expect(decoded == frames.map { .frame($0) })
    }

    @Test func oversizedFrameIsReportedAndSkippedThenTheNextFrameDecodes() {
        var decoder = TTRPCFrameDecoder(maxPayloadLength: 16)
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(40))
        buffer.writeInteger(UInt32(7))
        buffer.writeInteger(UInt8(1))
        buffer.writeInteger(UInt8(0))
        let next = TTRPCFrame(streamID: 9, kind: .request, payload: ByteBuffer(string: "ok"))
        #expect(decoder.next(from: &buffer) == .oversized(streamID: 7, type: 1, length: 40))
        // The oversized payload streams in over several reads and is never buffered.
        for _ in 0..<4 {
            buffer.writeBytes([UInt8](repeating: 0xAB, count: 10))
            #expect(decoder.next(from: &buffer) == nil)
            #expect(buffer.readableBytes == 0)
        }
        var rest = encoded([next])
        buffer.writeBuffer(&rest)
        #expect(decoder.next(from: &buffer) == .frame(next))
    }

    @Test func incompleteHeaderWaitsForMoreBytes() {
        var decoder = TTRPCFrameDecoder()
        var buffer = ByteBuffer(bytes: [0, 0, 0, 1, 0, 0, 0])
        #expect(decoder.next(from: &buffer) == nil)
        #expect(buffer.readableBytes == 7)
    }
}
