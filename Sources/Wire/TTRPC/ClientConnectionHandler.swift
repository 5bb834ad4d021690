#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import FoundationEssentials
import Glibc
#endif
import NIOCore

/// A call on its way out: the encoded request, the stream it goes on and who waits for it.
struct OutboundCall {
    let streamID: UInt32
    let request: ByteBuffer
    let timeout: Int64?
    let promise: EventLoopPromise<Data>
}

/// The client side of one ttrpc connection: sends requests, matches answers to them by stream
/// id (in any order), and fails calls whose deadline passes or whose connection goes away.
///
/// Answers come back as the response payload; a non-OK status fails the call with that
/// `TTRPCStatus`. An oversized answer fails only its own call with ResourceExhausted. A frame
/// that makes no sense on a client (a request, an unknown type) closes the connection.
final class ClientConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = TTRPCInboundFrame
    typealias OutboundIn = OutboundCall
    typealias OutboundOut = TTRPCFrame

    private struct Pending {
        let promise: EventLoopPromise<Data>
        let timer: Scheduled<Void>?
    }

    private var pending: [UInt32: Pending] = [:]
    private var context: ChannelHandlerContext?
    private var closedStatus: TTRPCStatus?
    private var flushPending = false

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        failAll(Self.closed)
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(Self.closed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(TTRPCStatus(.unavailable, "ttrpc: connection error: \(error)"))
        context.close(promise: nil)
    }

    static let closed = TTRPCStatus(.unavailable, "ttrpc: closed")

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let call = unwrapOutboundIn(data)
        if let closedStatus {
            call.promise.fail(closedStatus)
            promise?.fail(closedStatus)
            return
        }
        guard pending[call.streamID] == nil else {
            call.promise.fail(TTRPCStatus(.internal, "ttrpc: stream \(call.streamID) already in use"))
            promise?.succeed()
            return
        }
        let streamID = call.streamID
        let timer = call.timeout.map { nanos in
            context.eventLoop.scheduleTask(in: .nanoseconds(nanos)) {
                call.promise.fail(TTRPCStatus(.deadlineExceeded, "context deadline exceeded"))
            }
        }
        pending[streamID] = Pending(promise: call.promise, timer: timer)
        // However the call ends (answer, deadline, cancellation, connection loss), forget it.
        let this = NIOLoopBound(self, eventLoop: context.eventLoop)
        call.promise.futureResult.whenComplete { _ in
            if let entry = this.value.pending.removeValue(forKey: streamID) {
                entry.timer?.cancel()
            }
        }
        context.write(wrapOutboundOut(TTRPCFrame(streamID: streamID, kind: .request, payload: call.request)), promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        // A call alone on the connection goes out at once; with others in flight, requests
        // written in the same tick share one flush.
        if pending.count <= 1, !flushPending {
            context.flush()
        } else {
            scheduleFlush(context: context)
        }
    }

    /// Requests written in the same event-loop tick share one flush (one write syscall).
    private func scheduleFlush(context: ChannelHandlerContext) {
        guard !flushPending else { return }
        flushPending = true
        let this = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let handler = this.value
            handler.flushPending = false
            handler.context?.flush()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .oversized(streamID, type, length):
            guard type == TTRPCFrame.Kind.response.rawValue else { return }
            pending[streamID]?.promise.fail(TTRPCStatus(
                .resourceExhausted,
                "message length \(length) exceed maximum message size of \(TTRPCFrame.maxPayloadLength)"))
        case let .frame(frame):
            switch frame.kind {
            case .response:
                guard let entry = pending[frame.streamID] else { return }  // late answer to a call given up on
                switch TTRPCResponse.decode(frame.payload) {
                case let .success(payload): entry.promise.succeed(payload)
                case let .failure(status): entry.promise.fail(status)
                }
            case .data:
                break
            case .request, nil:
                failAll(TTRPCStatus(.unavailable, "ttrpc: protocol violation by server (frame type \(frame.type))"))
                context.close(promise: nil)
            }
        }
    }

    private func failAll(_ status: TTRPCStatus) {
        if closedStatus == nil { closedStatus = status }
        let entries = pending
        pending.removeAll()
        for entry in entries.values {
            entry.timer?.cancel()
            entry.promise.fail(status)
        }
    }
}
