import NIOCore
import SwiftProtobuf

/// Lets swift-protobuf decode from and encode into a `ByteBuffer` without an intermediate copy.
struct ProtobufBytes: SwiftProtobufContiguousBytes {
    var buffer: ByteBuffer

    init(_ buffer: ByteBuffer) { self.buffer = buffer }

    init(repeating: UInt8, count: Int) {
        buffer = ByteBufferAllocator().buffer(repeating: repeating, count: count)
    }

    init<S: Sequence>(_ sequence: S) where S.Element == UInt8 {
        buffer = ByteBuffer(bytes: sequence)
    }

    var count: Int { buffer.readableBytes }

    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try buffer.withUnsafeReadableBytes(body)
    }

    mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try buffer.withUnsafeMutableReadableBytes(body)
    }
}

extension SwiftProtobuf.Message {
    /// Decodes a message from the readable bytes of `buffer`.
    init(buffer: ByteBuffer) throws {
        try self.init(serializedBytes: ProtobufBytes(buffer))
    }

    /// Encodes the message into a new `ByteBuffer`.
    func serializedBuffer() throws -> ByteBuffer {
        let bytes: ProtobufBytes = try serializedBytes()
        return bytes.buffer
    }
}
