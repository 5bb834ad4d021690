import NIOCore
import NIOPosix
import Synchronization

/// Many byte streams over one connection (the `skiff.stdio` channel between the shim and the
/// guest agent), each with its own credit-based flow control, so a process whose reader is
/// slow stops only itself: the sender sends no more than the receiver has granted, and the
/// receiver grants more only as its consumer takes bytes.
///
/// Stream ids are chosen by the host and named in the agent request that uses them. Either
/// side may send on a stream (`sender(stream:)`) or receive on one (`receiver(stream:window:)`,
/// which grants the first `window` bytes).
public final class StdioMux: Sendable {
    private let channel: any Channel
    let state: Mutex<MuxState>

    init(channel: any Channel) {
        self.channel = channel
        self.state = Mutex(MuxState())
    }

    /// Adds the frame codec to `channel` and returns the multiplexer over it. Create the
    /// channel with `autoRead` off, so nothing is read (and dropped) before the codec is in
    /// place; reading starts once it is.
    public static func attach(to channel: any Channel) async throws -> StdioMux {
        let mux = StdioMux(channel: channel)
        try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(MuxFrameDecoder()))
            try channel.pipeline.syncOperations.addHandler(MuxInboundHandler(mux: mux))
        }.get()
        try await channel.setOption(.autoRead, value: true).get()
        return mux
    }

    /// Connects to a unix socket (QEMU's end of the stdio port) and multiplexes over it.
    public static func connect(unixSocket path: String, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> StdioMux {
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 256 << 10))
            .channelOption(.autoRead, value: false)
            .connect(unixDomainSocketPath: path).get()
        return try await attach(to: channel)
    }

    /// The sending half of `stream`.
    public func sender(stream: UInt32) -> MuxSender { MuxSender(mux: self, stream: stream) }

    /// Starts receiving `stream`, granting the sender `window` bytes up front.
    public func receiver(stream: UInt32, window: Int = 1 << 20) -> MuxReceiver {
        state.withLock { $0.receivers[stream] = MuxState.Receive(granted: window, regrantThreshold: max(1, window / 4)) }
        write(.credit(stream: stream, bytes: window))
        return MuxReceiver(mux: self, stream: stream)
    }

    /// Tells the peer this side is ready (a `hello` frame carrying `text`).
    public func sendHello(_ text: String) async throws {
        try await write(MuxFrame(stream: 0, kind: .hello, payload: ByteBuffer(string: text))).get()
    }

    /// The peer's hello text: at once if it came already, else when it comes. Throws if the
    /// connection closes first.
    public func hello() async throws -> String {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<String, any Error>) in
            let ready: Result<String, any Error>? = state.withLock { state in
                if let hello = state.hello { return .success(hello) }
                if let closed = state.closed { return .failure(closed) }
                state.helloWaiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }

    /// Closes the connection; every stream fails with `MuxError.closed`.
    public func close() async {
        try? await channel.close()
    }

    /// Completes when the connection has closed.
    public func waitClosed() async {
        try? await channel.closeFuture.get()
    }

    @discardableResult
    func write(_ frame: MuxFrame) -> EventLoopFuture<Void> {
        var buffer = channel.allocator.buffer(capacity: MuxFrame.headerLength + frame.payload.readableBytes)
        frame.encode(into: &buffer)
        return channel.writeAndFlush(buffer)
    }

    func closeForViolation(_ error: MuxError) {
        failAll(error)
        channel.close(promise: nil)
    }

    func failAll(_ error: MuxError) {
        let (senders, receivers, hellos) = state.withLock { state -> ([CheckedContinuation<Void, any Error>], [CheckedContinuation<ByteBuffer?, any Error>], [CheckedContinuation<String, any Error>]) in
            if state.closed == nil { state.closed = error }
            let s = state.senders.values.compactMap(\.waiter)
            let r = state.receivers.values.compactMap(\.waiter)
            let h = state.helloWaiters
            state.senders.removeAll()
            state.receivers.removeAll()
            state.helloWaiters.removeAll()
            return (s, r, h)
        }
        for waiter in senders { waiter.resume(throwing: error) }
        for waiter in receivers { waiter.resume(throwing: error) }
        for waiter in hellos { waiter.resume(throwing: error) }
    }
}

/// The bookkeeping of every stream on one connection.
struct MuxState {
    struct Send {
        var credit = 0
        /// The receiver has granted credit once: it has the stream, and an end of stream
        /// sent now is not dropped as one for a stream nobody receives.
        var opened = false
        var reset = false
        var waiter: CheckedContinuation<Void, any Error>?
    }

    struct Receive {
        var chunks: [ByteBuffer] = []
        var head = 0
        var eof = false
        /// Bytes the sender may still send: granted and not yet received.
        var granted: Int
        /// Bytes consumed and not yet granted again: they go back in one credit frame once they
        /// reach `regrantThreshold`, not a frame per chunk (each frame costs the guest a wake-up
        /// and a virtqueue round trip, a large share of an emulated vCPU's time when streaming).
        var consumedUngranted = 0
        /// A quarter of the stream's window: the sender keeps three quarters in flight.
        var regrantThreshold: Int
        var waiter: CheckedContinuation<ByteBuffer?, any Error>?
    }

    var senders: [UInt32: Send] = [:]
    /// Credit frames the peer sent (each costs the receiving side a wake-up: kept few).
    var creditFramesReceived = 0
    var receivers: [UInt32: Receive] = [:]
    var closed: MuxError?
    /// The peer's hello, once it came, and who waits for it.
    var hello: String?
    var helloWaiters: [CheckedContinuation<String, any Error>] = []
}

/// Routes incoming frames to the streams' state.
final class MuxInboundHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = MuxFrame
    private let mux: StdioMux

    init(mux: StdioMux) { self.mux = mux }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.kind {
        case .hello:
            let text = frame.payload.getString(at: frame.payload.readerIndex, length: frame.payload.readableBytes) ?? ""
            let waiters = mux.state.withLock { state -> [CheckedContinuation<String, any Error>] in
                state.hello = text
                defer { state.helloWaiters.removeAll() }
                return state.helloWaiters
            }
            waiters.forEach { $0.resume(returning: text) }
        case .credit:
            let bytes = Int(frame.payload.getInteger(at: frame.payload.readerIndex, as: UInt32.self) ?? 0)
            let waiter = mux.state.withLock { state -> CheckedContinuation<Void, any Error>? in
                var send = state.senders[frame.stream] ?? MuxState.Send()
                send.credit += bytes
                send.opened = true
                state.creditFramesReceived += 1
                let waiter = send.waiter
                send.waiter = nil
                state.senders[frame.stream] = send
                return waiter
            }
            waiter?.resume()
        case .reset:
            let waiter = mux.state.withLock { state -> CheckedContinuation<Void, any Error>? in
                var send = state.senders[frame.stream] ?? MuxState.Send()
                send.reset = true
                let waiter = send.waiter
                send.waiter = nil
                state.senders[frame.stream] = send
                return waiter
            }
            waiter?.resume(throwing: MuxError.reset)
        case .data, .eof:
            var violation: MuxError?
            let delivery = mux.state.withLock { state -> (CheckedContinuation<ByteBuffer?, any Error>, ByteBuffer?)? in
                // Data for a stream nobody receives (any more) was in flight when it was reset.
                guard var receive = state.receivers[frame.stream] else { return nil }
                if frame.kind == .data {
                    guard frame.payload.readableBytes <= receive.granted else {
                        violation = .protocolViolation("stream \(frame.stream) sent \(frame.payload.readableBytes) bytes with \(receive.granted) granted")
                        return nil
                    }
                    receive.granted -= frame.payload.readableBytes
                } else {
                    receive.eof = true
                }
                guard let waiter = receive.waiter else {
                    if frame.kind == .data, frame.payload.readableBytes > 0 { receive.chunks.append(frame.payload) }
                    state.receivers[frame.stream] = receive
                    return nil
                }
                receive.waiter = nil
                if frame.kind == .eof {
                    // A waiting consumer has taken everything before: the stream is over.
                    state.receivers[frame.stream] = nil
                    return (waiter, nil)
                }
                state.receivers[frame.stream] = receive
                return (waiter, frame.payload)
            }
            if let violation { mux.closeForViolation(violation); return }
            if let (waiter, chunk) = delivery {
                if let chunk { mux.consumed(stream: frame.stream, bytes: chunk.readableBytes) }
                waiter.resume(returning: chunk)
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        mux.failAll(.closed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        mux.failAll(error as? MuxError ?? .closed)
        context.close(promise: nil)
    }
}
