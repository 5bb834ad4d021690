#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import FoundationEssentials
import Glibc
#endif
import NIOCore

/// Encodes a ttrpc `Request` straight into a `ByteBuffer`, byte for byte as swift-protobuf
/// would (fields in number order, proto3 defaults left out), without building the message:
/// the client's hot path. `RequestEncodingTests` pins the equivalence.
enum RequestEncoding {
    static func encode(service: String, method: String, payload: ByteBuffer, timeoutNano: Int64?,
                       metadata: [(key: String, value: String)], allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: service.utf8.count + method.utf8.count + payload.readableBytes + 32)
        writeString(1, service, into: &buffer)
        writeString(2, method, into: &buffer)
        if payload.readableBytes > 0 {
            buffer.writeInteger(UInt8(3 << 3 | 2))
            writeVarint(UInt64(payload.readableBytes), into: &buffer)
            var payload = payload
            buffer.writeBuffer(&payload)
        }
        if let timeoutNano, timeoutNano != 0 {
            buffer.writeInteger(UInt8(4 << 3 | 0))
            writeVarint(UInt64(bitPattern: timeoutNano), into: &buffer)
        }
        for pair in metadata {
            let keyLength = pair.key.utf8.count, valueLength = pair.value.utf8.count
            var inner = 0
            if keyLength > 0 { inner += 1 + varintSize(UInt64(keyLength)) + keyLength }
            if valueLength > 0 { inner += 1 + varintSize(UInt64(valueLength)) + valueLength }
            buffer.writeInteger(UInt8(5 << 3 | 2))
            writeVarint(UInt64(inner), into: &buffer)
            writeString(1, pair.key, into: &buffer)
            writeString(2, pair.value, into: &buffer)
        }
        return buffer
    }

    /// A `Response` with an OK status (an empty `google.rpc.Status`, present) and `payload`.
    static func okResponse(payload: Data, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: payload.count + 8)
        buffer.writeInteger(UInt8(1 << 3 | 2))
        buffer.writeInteger(UInt8(0))
        if !payload.isEmpty {
            buffer.writeInteger(UInt8(2 << 3 | 2))
            writeVarint(UInt64(payload.count), into: &buffer)
            buffer.writeBytes(payload)
        }
        return buffer
    }

    private static func writeString(_ field: UInt8, _ value: String, into buffer: inout ByteBuffer) {
        let length = value.utf8.count
        guard length > 0 else { return }
        buffer.writeInteger(field << 3 | 2)
        writeVarint(UInt64(length), into: &buffer)
        buffer.writeString(value)
    }

    static func writeVarint(_ value: UInt64, into buffer: inout ByteBuffer) {
        var v = value
        while v >= 0x80 {
            buffer.writeInteger(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        buffer.writeInteger(UInt8(v))
    }

    static func varintSize(_ value: UInt64) -> Int {
        var v = value, n = 1
        while v >= 0x80 { v >>= 7; n += 1 }
        return n
    }
}
