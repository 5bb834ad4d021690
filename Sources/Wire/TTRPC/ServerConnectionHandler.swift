#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import FoundationEssentials
import Glibc
#endif
import Logging
import NIOCore

/// Serves ttrpc requests arriving on one connection. Each request runs in its own task, so a
/// slow call never holds up the others; answers go out in whatever order calls finish.
/// The tasks prefer the connection's event loop as their executor: a handler that does not
/// suspend elsewhere runs to completion without a thread hop.
///
/// A request with an even stream id or an undecodable envelope is answered InvalidArgument, an
/// oversized one ResourceExhausted, an unknown service or method Unimplemented; the connection
/// carries on. A frame of a type ttrpc does not define closes the connection.
final class ServerConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = TTRPCInboundFrame
    typealias OutboundOut = TTRPCFrame

    private struct Call {
        let task: Task<Void, Never>
        let timer: Scheduled<Void>?
    }

    private let registry: TTRPCServiceRegistry
    private let logger: Logger
    private var context: ChannelHandlerContext?
    private var executor: EventLoopTaskExecutor?
    private var calls: [UInt32: Call] = [:]
    private var flushPending = false

    init(registry: TTRPCServiceRegistry, logger: Logger) {
        self.registry = registry
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        executor = EventLoopTaskExecutor(context.eventLoop)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelAll()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelAll()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("ttrpc connection error, closing", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .oversized(streamID, type, length):
            guard type == TTRPCFrame.Kind.request.rawValue else { return }
            respond(streamID, status: TTRPCStatus(
                .resourceExhausted,
                "message length \(length) exceed maximum message size of \(TTRPCFrame.maxPayloadLength)"))
        case let .frame(frame):
            switch frame.kind {
            case .request:
                handleRequest(frame)
            case .data:
                // Stream data for a request we do not stream: ignored, as containerd's ttrpc does.
                break
            case .response, nil:
                logger.debug("ttrpc protocol violation, closing", metadata: ["frameType": "\(frame.type)"])
                context.close(promise: nil)
            }
        }
    }

    private func handleRequest(_ frame: TTRPCFrame) {
        let streamID = frame.streamID
        guard streamID % 2 == 1 else {
            respond(streamID, status: TTRPCStatus(.invalidArgument, "StreamID must be odd for client initiated streams"))
            return
        }
        guard calls[streamID] == nil else {
            respond(streamID, status: TTRPCStatus(.invalidArgument, "stream \(streamID) already has a call in flight"))
            return
        }
        let request: TTRPCRequest
        do {
            request = try TTRPCRequest(decoding: frame.payload)
        } catch {
            respond(streamID, status: error)
            return
        }
        let method: TTRPCMethod
        switch registry.lookup(service: request.service, method: request.method) {
        case let .success(found): method = found
        case let .failure(status):
            respond(streamID, status: status)
            return
        }
        guard let context, let executor else { return }

        let timeout = request.timeoutNanoseconds
        let callContext = TTRPCServerContext(
            service: request.service, method: request.method,
            metadata: request.metadata,
            deadline: timeout.map { ContinuousClock.now + .nanoseconds($0) },
            streamID: streamID)
        let payload = request.payload
        let eventLoop = context.eventLoop
        let this = NIOLoopBound(self, eventLoop: eventLoop)

        let task = Task(executorPreference: executor) {
            let result: Result<Data, any Error>
            do {
                result = .success(try await method.body(payload, callContext))
            } catch {
                result = .failure(error)
            }
            eventLoop.executeSoon { this.value.finish(streamID, result, context: callContext) }
        }
        let timer = timeout.map { nanos in
            eventLoop.scheduleTask(in: .nanoseconds(nanos)) { task.cancel() }
        }
        calls[streamID] = Call(task: task, timer: timer)
    }

    private func finish(_ streamID: UInt32, _ result: Result<Data, any Error>, context callContext: TTRPCServerContext) {
        guard let call = calls.removeValue(forKey: streamID) else { return }
        call.timer?.cancel()
        switch result {
        case let .success(payload):
            respond(streamID, status: TTRPCStatus(.ok), payload: payload)
        case let .failure(error):
            respond(streamID, status: Self.status(for: error, deadline: callContext.deadline))
        }
    }

    /// The status a handler's error travels as.
    static func status(for error: any Error, deadline: ContinuousClock.Instant?) -> TTRPCStatus {
        if let convertible = error as? any TTRPCStatusConvertible {
            return convertible.ttrpcStatus
        }
        if error is CancellationError {
            if let deadline, deadline <= .now {
                return TTRPCStatus(.deadlineExceeded, "context deadline exceeded")
            }
            return TTRPCStatus(.cancelled, "context canceled")
        }
        return TTRPCStatus(.unknown, String(describing: error))
    }

    private func respond(_ streamID: UInt32, status: TTRPCStatus, payload: Data = Data()) {
        guard let context else { return }
        var encoded: ByteBuffer
        if status.code == .ok, status.message.isEmpty, status.details.isEmpty, payload.count <= TTRPCFrame.maxPayloadLength - 16 {
            // The common answer, encoded by hand (the hot path; `ResponseEncodingTests`).
            encoded = RequestEncoding.okResponse(payload: payload, allocator: context.channel.allocator)
            context.write(wrapOutboundOut(TTRPCFrame(streamID: streamID, kind: .response, payload: encoded)), promise: nil)
            scheduleFlush()
            return
        }
        var response = Ttrpc_Response()
        response.status = status.wire
        response.payload = payload
        do {
            encoded = try response.serializedBuffer()
            if encoded.readableBytes > TTRPCFrame.maxPayloadLength {
                var tooLarge = Ttrpc_Response()
                tooLarge.status = TTRPCStatus(
                    .resourceExhausted,
                    "response of \(encoded.readableBytes) bytes exceeds maximum message size of \(TTRPCFrame.maxPayloadLength)"
                ).wire
                encoded = try tooLarge.serializedBuffer()
            }
        } catch {
            logger.error("cannot encode ttrpc response", metadata: ["error": "\(error)"])
            return
        }
        context.write(wrapOutboundOut(TTRPCFrame(streamID: streamID, kind: .response, payload: encoded)), promise: nil)
        scheduleFlush()
    }

    /// Answers finishing in the same event-loop tick share one flush (one write syscall).
    private func scheduleFlush() {
        guard !flushPending, let context else { return }
        flushPending = true
        let this = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let handler = this.value
            handler.flushPending = false
            handler.context?.flush()
        }
    }

    private func cancelAll() {
        for call in calls.values {
            call.timer?.cancel()
            call.task.cancel()
        }
        calls.removeAll()
    }
}

extension EventLoop {
    /// Runs `body` now when already on this loop, else on the loop.
    func executeSoon(_ body: @escaping @Sendable () -> Void) {
        if inEventLoop { body() } else { execute(body) }
    }
}
