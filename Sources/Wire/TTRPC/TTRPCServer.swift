#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import NIOCore
import NIOPosix

/// A ttrpc server: a set of services, served on a unix socket or on any connected NIO channel
/// (the guest agent's virtio-serial port is one).
public struct TTRPCServer: Sendable {
    public let registry: TTRPCServiceRegistry
    let logger: Logger

    public init(services: [any TTRPCServiceProvider], logger: Logger = Logger(label: "skiff.ttrpc.server")) {
        self.init(registry: TTRPCServiceRegistry(services), logger: logger)
    }

    public init(registry: TTRPCServiceRegistry, logger: Logger = Logger(label: "skiff.ttrpc.server")) {
        self.registry = registry
        self.logger = logger
    }

    /// Adds the ttrpc codec and request handling to `channel`'s pipeline. Must be called on the
    /// channel's event loop (for example from a bootstrap's child channel initializer).
    public func configureSynchronously(_ pipeline: ChannelPipeline.SynchronousOperations) throws {
        try pipeline.addHandler(ByteToMessageHandler(TTRPCFrameDecoder()))
        try pipeline.addHandler(MessageToByteHandler(TTRPCFrameEncoder()))
        try pipeline.addHandler(ServerConnectionHandler(registry: registry, logger: logger))
    }

    /// Serves ttrpc on an already connected channel from any thread. Create the channel with
    /// `autoRead` off: bytes read before the handlers are in place would be dropped (a peer's
    /// first request, typically). Reading starts once they are.
    public func serve(on channel: any Channel) async throws {
        try await channel.eventLoop.submit {
            try self.configureSynchronously(channel.pipeline.syncOperations)
        }.get()
        try await channel.setOption(.autoRead, value: true).get()
    }

    /// Listens on a unix socket at `path` (replacing a stale socket file) and serves every
    /// connection. The socket file gets `permissions` (0600 unless told otherwise).
    public func listen(
        unixSocket path: String,
        permissions: UInt32 = 0o600,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> TTRPCListener {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    try self.configureSynchronously(child.pipeline.syncOperations)
                }
            }
            .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true)
            .get()
        guard chmod(path, mode_t(permissions)) == 0 else {
            let code = errno
            try? await channel.close()
            throw TTRPCStatus(.internal, "chmod \(path): errno \(code)")
        }
        return TTRPCListener(channel: channel, path: path)
    }

    /// Serves every connection on a socket that is already bound and listening (a shim gets
    /// its socket from the `start` invocation that made it, as descriptor 3).
    public func listen(
        boundSocket descriptor: CInt, path: String,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> TTRPCListener {
        let channel = try await ServerBootstrap(group: group)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    try self.configureSynchronously(child.pipeline.syncOperations)
                }
            }
            .withBoundSocket(descriptor)
            .get()
        return TTRPCListener(channel: channel, path: path)
    }
}

/// A listening ttrpc socket. Closing it stops new connections and removes the socket file;
/// connections already accepted carry on until their peers close them.
public struct TTRPCListener: Sendable {
    public let channel: any Channel
    public let path: String

    public func close() async throws {
        try await channel.close()
        unlink(path)
    }

    /// Returns when the listener has been closed.
    public func waitClosed() async throws {
        try await channel.closeFuture.get()
    }
}
