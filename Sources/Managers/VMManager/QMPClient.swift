import SkiffSupport
import FoundationEssentials
import Glibc
import NIOCore
import NIOPosix
import Synchronization

/// An event QEMU announced on QMP (`SHUTDOWN`, `DEVICE_DELETED`, `STOP`, ...).
public struct QMPEvent: Sendable, Equatable {
    public var name: String
    public var data: JSONValue
}

/// An async client of QEMU's machine protocol (QMP) over its unix socket: negotiates
/// capabilities, runs commands (several may be in flight; answers are matched by id), and
/// delivers asynchronous events as a stream.
///
/// Failures are `VMManagerError.qmp` (QEMU refused the command, with its error class and
/// description) and `.disconnected` (the socket closed, for example because QEMU exited; every
/// command in flight fails with it).
public final class QMPClient: Sendable {
    private let channel: any Channel
    private let state: QMPConnectionState
    /// Every event, in the order QEMU sent them. The stream ends when the connection closes.
    public let events: AsyncStream<QMPEvent>

    private init(channel: any Channel, state: QMPConnectionState, events: AsyncStream<QMPEvent>) {
        self.channel = channel
        self.state = state
        self.events = events
    }

    /// Connects to QEMU's QMP socket and enters command mode.
    public static func connect(
        unixSocket path: String, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(VMManagerError) -> QMPClient {
        let (events, continuation) = AsyncStream<QMPEvent>.makeStream()
        let state = QMPConnectionState(events: continuation)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(QMPLineDecoder()))
                        try channel.pipeline.syncOperations.addHandler(QMPHandler(state: state))
                    }
                }
                .connect(unixDomainSocketPath: path).get()
        } catch {
            throw .disconnected("connect \(path): \(error)")
        }
        let client = QMPClient(channel: channel, state: state, events: events)
        do {
            try await state.waitForGreeting()
            _ = try await client.execute("qmp_capabilities")
        } catch {
            await client.close()
            throw error
        }
        return client
    }

    /// Runs a QMP command and returns its `return` value.
    @discardableResult
    public func execute(_ command: String, _ arguments: [String: JSONValue] = [:]) async throws(VMManagerError) -> JSONValue {
        let id = state.nextID()
        var message: [String: JSONValue] = ["execute": .string(command), "id": .integer(Int64(id))]
        if !arguments.isEmpty { message["arguments"] = .object(arguments) }
        let line: Data
        do {
            line = try JSONEncoder().encode(JSONValue.object(message)) + Data("\n".utf8)
        } catch {
            throw .invalidConfiguration("cannot encode QMP command \(command): \(error)")
        }
        let result: Result<JSONValue, VMManagerError> = await withCheckedContinuation { continuation in
            guard state.register(id: id, continuation) else {
                continuation.resume(returning: .failure(.disconnected("connection closed")))
                return
            }
            channel.writeAndFlush(ByteBuffer(bytes: line)).whenFailure { [state] error in
                state.fail(id: id, .disconnected("write \(command): \(error)"))
            }
        }
        return try result.get()
    }

    /// Closes the connection; commands in flight fail `.disconnected`.
    public func close() async {
        try? await channel.close()
    }

    /// Returns when the connection has closed (QEMU exited, or `close()`).
    public func waitClosed() async {
        try? await channel.closeFuture.get()
    }
}

/// Commands waiting for answers and the greeting handshake, shared by the client API and the
/// channel handler.
final class QMPConnectionState: Sendable {
    private struct Inner {
        var nextID = 1
        var pending: [Int: CheckedContinuation<Result<JSONValue, VMManagerError>, Never>] = [:]
        var greeted = false
        var greetingWaiters: [CheckedContinuation<Result<Void, VMManagerError>, Never>] = []
        var closedReason: String?
    }

    private let inner = Mutex(Inner())
    let events: AsyncStream<QMPEvent>.Continuation

    init(events: AsyncStream<QMPEvent>.Continuation) {
        self.events = events
    }

    func nextID() -> Int {
        inner.withLock { inner in
            defer { inner.nextID += 1 }
            return inner.nextID
        }
    }

    func register(id: Int, _ continuation: CheckedContinuation<Result<JSONValue, VMManagerError>, Never>) -> Bool {
        inner.withLock { inner in
            guard inner.closedReason == nil else { return false }
            inner.pending[id] = continuation
            return true
        }
    }

    func complete(id: Int, _ result: Result<JSONValue, VMManagerError>) {
        inner.withLock { $0.pending.removeValue(forKey: id) }?.resume(returning: result)
    }

    func fail(id: Int, _ error: VMManagerError) { complete(id: id, .failure(error)) }

    func waitForGreeting() async throws(VMManagerError) {
        let result: Result<Void, VMManagerError> = await withCheckedContinuation { continuation in
            let immediate: Result<Void, VMManagerError>? = inner.withLock { inner in
                if inner.greeted { return .success(()) }
                if let reason = inner.closedReason { return .failure(.disconnected(reason)) }
                inner.greetingWaiters.append(continuation)
                return nil
            }
            if let immediate { continuation.resume(returning: immediate) }
        }
        try result.get()
    }

    func greeted() {
        let waiters = inner.withLock { inner in
            inner.greeted = true
            defer { inner.greetingWaiters.removeAll() }
            return inner.greetingWaiters
        }
        for waiter in waiters { waiter.resume(returning: .success(())) }
    }

    func closed(_ reason: String) {
        let (pending, waiters) = inner.withLock { inner in
            if inner.closedReason == nil { inner.closedReason = reason }
            defer { inner.pending.removeAll(); inner.greetingWaiters.removeAll() }
            return (inner.pending, inner.greetingWaiters)
        }
        for continuation in pending.values { continuation.resume(returning: .failure(.disconnected(reason))) }
        for waiter in waiters { waiter.resume(returning: .failure(.disconnected(reason))) }
        events.finish()
    }
}

/// Splits QMP's stream into JSON lines.
struct QMPLineDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    /// A line longer than this is a broken peer, not QMP.
    static let maxLine = 16 << 20

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.withUnsafeReadableBytes({ $0.firstIndex(of: UInt8(ascii: "\n")) }) else {
            if buffer.readableBytes > Self.maxLine { throw VMManagerError.disconnected("QMP line over \(Self.maxLine) bytes") }
            return .needMoreData
        }
        guard let line = buffer.readSlice(length: length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 1)
        context.fireChannelRead(wrapInboundOut(line))
        return .continue
    }
}

/// Sorts QMP messages into greetings, answers and events.
final class QMPHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    private let state: QMPConnectionState

    init(state: QMPConnectionState) { self.state = state }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = unwrapInboundIn(data)
        guard line.readableBytes > 0,
              let message = try? JSONDecoder().decode(JSONValue.self, from: Data(line.readableBytesView))
        else { return }
        if message["QMP"] != nil {
            state.greeted()
        } else if let event = message["event"]?.stringValue {
            state.events.yield(QMPEvent(name: event, data: message["data"] ?? .null))
        } else if let id = message["id"]?.intValue {
            if let error = message["error"] {
                state.complete(id: id, .failure(.qmp(
                    errorClass: error["class"]?.stringValue ?? "GenericError",
                    description: error["desc"]?.stringValue ?? "")))
            } else {
                state.complete(id: id, .success(message["return"] ?? .null))
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        state.closed("QMP connection closed")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        state.closed("QMP connection error: \(error)")
        context.close(promise: nil)
    }
}
