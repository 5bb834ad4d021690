#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import FoundationEssentials
import Glibc
#endif
import NIOCore
import NIOPosix
import SwiftProtobuf
import Synchronization

/// A ttrpc client over one connection: a unix socket or any connected NIO channel. Calls may
/// be made concurrently from any task; each gets its own odd stream id and its answer,
/// whatever order the server answers in.
///
/// A failed call throws `TTRPCStatus`: the server's status, DeadlineExceeded when the
/// call's timeout passes, Cancelled when the calling task is cancelled, Unavailable once the
/// connection is gone, ResourceExhausted for a message over 4 MiB either way.
public final class TTRPCClient: Sendable {
    public let channel: any Channel
    /// Runs tasks on the connection's event loop. A task that prefers it (`Task(executorPreference:)`,
    /// `withTaskExecutorPreference`) makes calls without any thread hop: the request is written
    /// and the answer resumes the caller on the connection's own thread.
    public let executor: any TaskExecutor
    private let nextStreamID = Atomic<UInt32>(1)

    private init(channel: any Channel) {
        self.channel = channel
        self.executor = EventLoopTaskExecutor(channel.eventLoop)
    }

    /// Adds the ttrpc client codec to `pipeline`. Must run on the channel's event loop.
    public static func configureSynchronously(_ pipeline: ChannelPipeline.SynchronousOperations) throws {
        try pipeline.addHandler(ByteToMessageHandler(TTRPCFrameDecoder()))
        try pipeline.addHandler(MessageToByteHandler(TTRPCFrameEncoder()))
        try pipeline.addHandler(ClientConnectionHandler())
    }

    /// Connects to a ttrpc server listening on the unix socket at `path`.
    public static func connect(
        unixSocket path: String,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> TTRPCClient {
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try configureSynchronously(channel.pipeline.syncOperations)
                    }
                }
                .connect(unixDomainSocketPath: path)
                .get()
        } catch {
            throw TTRPCStatus(.unavailable, "ttrpc: connect \(path): \(error)")
        }
        return TTRPCClient(channel: channel)
    }

    /// Speaks ttrpc as a client on an already connected channel (for example the agent's
    /// virtio-serial port).
    public static func attach(to channel: any Channel) async throws -> TTRPCClient {
        try await channel.eventLoop.submit {
            try configureSynchronously(channel.pipeline.syncOperations)
        }.get()
        return TTRPCClient(channel: channel)
    }

    /// Calls `service`/`method` with an encoded request and returns the encoded answer.
    public func call(
        service: String, method: String, payload: Data,
        options: TTRPCCallOptions = TTRPCCallOptions()
    ) async throws -> Data {
        try await call(service: service, method: method, payload: ByteBuffer(bytes: payload), options: options)
    }

    /// The same call with the request already in a `ByteBuffer`.
    public func call(
        service: String, method: String, payload: ByteBuffer,
        options: TTRPCCallOptions = TTRPCCallOptions()
    ) async throws -> Data {
        let timeout = options.timeout.map { max($0.nanosecondsClamped, 1) }
        let encoded = RequestEncoding.encode(
            service: service, method: method, payload: payload, timeoutNano: timeout,
            metadata: options.metadata.pairs, allocator: channel.allocator)
        guard encoded.readableBytes <= TTRPCFrame.maxPayloadLength else {
            throw TTRPCStatus(
                .resourceExhausted,
                "message length \(encoded.readableBytes) exceed maximum message size of \(TTRPCFrame.maxPayloadLength)")
        }
        try Task.checkCancellation()

        let streamID = nextStreamID.wrappingAdd(2, ordering: .relaxed).oldValue
        let promise = channel.eventLoop.makePromise(of: Data.self)
        channel.writeAndFlush(OutboundCall(streamID: streamID, request: encoded, timeout: timeout, promise: promise))
            .whenFailure { error in promise.fail(Self.status(for: error)) }
        return try await withTaskCancellationHandler {
            try await promise.futureResult.get()
        } onCancel: {
            promise.fail(TTRPCStatus(.cancelled, "context canceled"))
        }
    }

    /// Calls a unary method with typed messages.
    public func unary<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        service: String, method: String, request: Request,
        options: TTRPCCallOptions = TTRPCCallOptions()
    ) async throws -> Response {
        let answer = try await call(service: service, method: method, payload: try request.serializedBuffer(), options: options)
        do {
            return try Response(serializedBytes: answer)
        } catch {
            throw TTRPCStatus(.internal, "\(service)/\(method): cannot decode \(Response.protoMessageName): \(error)")
        }
    }

    /// Closes the connection; calls still waiting fail Unavailable.
    public func close() async {
        try? await channel.close()
    }

    /// Returns when the connection has closed, from either side.
    public func waitClosed() async {
        try? await channel.closeFuture.get()
    }

    private static func status(for error: any Error) -> TTRPCStatus {
        if let status = error as? TTRPCStatus { return status }
        if error is ChannelError { return ClientConnectionHandler.closed }
        return TTRPCStatus(.unavailable, "ttrpc: \(error)")
    }
}
