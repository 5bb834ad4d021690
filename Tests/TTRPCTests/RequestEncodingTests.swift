import Foundation
import NIOCore
import SwiftProtobuf
import Testing
@testable import TTRPC

/// The client's hand-written Request encoding gives exactly swift-protobuf's bytes.
@Suite struct RequestEncodingTests {
    private func protobufBytes(service: String, method: String, payload: [UInt8], timeout: Int64?, metadata: [(String, String)]) throws -> [UInt8] {
        var request = Ttrpc_Request()
        request.service = service
        request.method = method
        request.payload = Data(payload)
        if let timeout { request.timeoutNano = timeout }
        request.metadata = metadata.map { pair in Ttrpc_KeyValue.with { $0.key = pair.0; $0.value = pair.1 } }
        return try request.serializedBytes()
    }

    @Test(arguments: [
        ("containerd.task.v2.Task", "Create", [UInt8](repeating: 7, count: 64), Int64?.none, [(String, String)]()),
        ("s", "m", [], Int64?.some(1), [("containerd-namespace-ttrpc", "default")]),
        ("", "", [UInt8](repeating: 1, count: 300), Int64?.some(5_000_000_000), [("k", ""), ("", "v"), ("a", "b")]),
        ("ünïcode.Svc", "Méthod", [0, 0, 0], Int64?.some(Int64.max), [("key", String(repeating: "x", count: 200))]),
    ])
    func handEncodingMatchesSwiftProtobuf(service: String, method: String, payload: [UInt8], timeout: Int64?, metadata: [(String, String)]) throws {
        let ours = RequestEncoding.encode(service: service, method: method, payload: ByteBuffer(bytes: payload),
                                          timeoutNano: timeout, metadata: metadata.map { (key: $0.0, value: $0.1) },
                                          allocator: ByteBufferAllocator())
        #expect(Array(ours.readableBytesView) == (try protobufBytes(service: service, method: method, payload: payload, timeout: timeout, metadata: metadata)))
    }

    @Test(arguments: [0, 1, 64, 200, 70_000])
    func okResponseMatchesSwiftProtobuf(size: Int) throws {
        let payload = Data((0..<size).map { UInt8(truncatingIfNeeded: $0) })
        var response = Ttrpc_Response()
        response.status = Google_Rpc_Status()
        response.payload = payload
        let expected: [UInt8] = try response.serializedBytes()
        #expect(Array(RequestEncoding.okResponse(payload: payload, allocator: ByteBufferAllocator()).readableBytesView) == expected)
    }
}
