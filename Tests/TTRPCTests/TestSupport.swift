#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOCore
import NIOPosix
import SwiftProtobuf
@testable import TTRPC

/// A unique socket path in a fresh temporary directory.
func temporarySocketPath() -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("skiff-ttrpc-\(UUID().uuidString.prefix(8))")
    try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent("s.sock").path
}

/// Removes the temporary directory `temporarySocketPath` made.
func removeSocketDirectory(_ path: String) {
    try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent)
}

/// Serves `services` on a fresh unix socket for the duration of `body`.
func withServer<T>(
    _ services: [any TTRPCServiceProvider],
    _ body: (String) async throws -> T
) async throws -> T {
    let path = temporarySocketPath()
    defer { removeSocketDirectory(path) }
    let listener = try await TTRPCServer(services: services).listen(unixSocket: path)
    do {
        let result = try await body(path)
        try await listener.close()
        return result
    } catch {
        try? await listener.close()
        throw error
    }
}

/// Serves `services` and connects a client to them for the duration of `body`.
func withClient<T>(
    _ services: [any TTRPCServiceProvider],
    _ body: (TTRPCClient) async throws -> T
) async throws -> T {
    try await withServer(services) { path in
        let client = try await TTRPCClient.connect(unixSocket: path)
        defer { Task { await client.close() } }
        return try await body(client)
    }
}

/// Gates for the Probe service's "Hold" method: a call holds until its gate opens, so a test
/// orders calls by what it does, not by how long a sleep takes on a loaded machine.
actor ProbeGates {
    static let shared = ProbeGates()
    private var open: Set<String> = []
    private var waiters: [String: [CheckedContinuation<Void, Never>]] = [:]

    func wait(_ name: String) async {
        if open.contains(name) { return }
        await withCheckedContinuation { waiters[name, default: []].append($0) }
    }

    func open(_ name: String) {
        open.insert(name)
        waiters.removeValue(forKey: name)?.forEach { $0.resume() }
    }
}

/// A hand-written service for tests, registered without the generator.
struct ProbeService: TTRPCServiceProvider {
    static let name = "skiff.test.v1.Probe"
    var serviceName: String { Self.name }

    struct Refused: TTRPCStatusConvertible {
        var ttrpcStatus: TTRPCStatus { TTRPCStatus(.failedPrecondition, "refused by probe") }
    }

    var methods: [TTRPCMethod] {
        [
            // Echoes the payload.
            TTRPCMethod(name: "Echo") { payload, _ in payload },
            // The milliseconds left before the call's deadline, or "none".
            TTRPCMethod(name: "Deadline") { _, context in
                guard let left = context.timeRemaining else { return Data("none".utf8) }
                return Data(String(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000).utf8)
            },
            // Sleeps the milliseconds given as decimal text, then answers the same text.
            TTRPCMethod(name: "Sleep") { payload, _ in
                let ms = Int(String(decoding: payload, as: UTF8.self)) ?? 0
                try await Task.sleep(for: .milliseconds(ms))
                return payload
            },
            // Holds until the gate named by the payload opens (ProbeGates), then answers it.
            TTRPCMethod(name: "Hold") { payload, _ in
                await ProbeGates.shared.wait(String(decoding: payload, as: UTF8.self))
                return payload
            },
            // Answers with the number of bytes given as decimal text.
            TTRPCMethod(name: "Big") { payload, _ in
                Data(count: Int(String(decoding: payload, as: UTF8.self)) ?? 0)
            },
            // Throws a layer error that maps itself to FailedPrecondition.
            TTRPCMethod(name: "Refuse") { _, _ in throw Refused() },
            // Throws an error that knows no status.
            TTRPCMethod(name: "Crash") { _, _ in throw CocoaError(.fileNoSuchFile) },
            // The metadata as "k=v" lines in wire order.
            TTRPCMethod(name: "Metadata") { _, context in
                Data(context.metadata.pairs.map { "\($0.key)=\($0.value)" }.joined(separator: "\n").utf8)
            },
            // A typed method through the `.unary` helper.
            .unary("Double") { (request: Google_Protobuf_Int64Value, _) in
                Google_Protobuf_Int64Value(request.value * 2)
            },
        ]
    }
}

extension TTRPCClient {
    func probe(_ method: String, _ text: String = "", options: TTRPCCallOptions = TTRPCCallOptions()) async throws -> String {
        let out = try await call(service: ProbeService.name, method: method, payload: Data(text.utf8), options: options)
        return String(decoding: out, as: UTF8.self)
    }
}

/// A connection that speaks raw bytes, to send what a well-behaved client never would.
final class RawConnection: @unchecked Sendable {
    // @unchecked: `received` and `decoder` are touched only on the channel's event loop.
    let channel: any Channel
    private let frames: AsyncStream<TTRPCInboundFrame>
    private var iterator: AsyncStream<TTRPCInboundFrame>.AsyncIterator

    private final class Collector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let continuation: AsyncStream<TTRPCInboundFrame>.Continuation
        var buffer = ByteBuffer()
        var decoder = TTRPCFrameDecoder()
        init(_ continuation: AsyncStream<TTRPCInboundFrame>.Continuation) { self.continuation = continuation }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = unwrapInboundIn(data)
            buffer.writeBuffer(&bytes)
            while let frame = decoder.next(from: &buffer) { continuation.yield(frame) }
        }
        func channelInactive(context: ChannelHandlerContext) { continuation.finish() }
    }

    init(path: String) async throws {
        let (stream, continuation) = AsyncStream<TTRPCInboundFrame>.makeStream()
        frames = stream
        iterator = stream.makeAsyncIterator()
        channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Collector(continuation))
                }
            }
            .connect(unixDomainSocketPath: path).get()
    }

    func send(_ bytes: ByteBuffer) async throws {
        try await channel.writeAndFlush(bytes)
    }

    func send(_ frame: TTRPCFrame) async throws {
        var out = ByteBuffer()
        TTRPCFrameEncoder.write(frame, to: &out)
        try await send(out)
    }

    /// Sends a request frame for `service`/`method` on `streamID`.
    func sendRequest(streamID: UInt32, service: String, method: String, payload: Data = Data()) async throws {
        var request = Ttrpc_Request()
        request.service = service
        request.method = method
        request.payload = payload
        try await send(TTRPCFrame(streamID: streamID, kind: .request, payload: try request.serializedBuffer()))
    }

    /// The next response, decoded; nil when the server closed the connection.
    func nextResponse() async throws -> (streamID: UInt32, response: Ttrpc_Response)? {
        while let inbound = await iterator.next() {
            if case let .frame(frame) = inbound, frame.kind == .response {
                return (frame.streamID, try Ttrpc_Response(buffer: frame.payload))
            }
        }
        return nil
    }

    func close() async { try? await channel.close() }
}
