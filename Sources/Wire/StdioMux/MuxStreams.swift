import NIOCore

/// The sending half of one stream: `send` waits for credit, so a slow receiver slows the
/// sender down instead of growing a buffer.
public struct MuxSender: Sendable {
    let mux: StdioMux
    public let stream: UInt32
    /// Largest data frame; smaller frames interleave streams more fairly.
    static let chunk = 256 << 10

    /// Sends `buffer`, waiting for credit as needed; returns once its frames are queued on
    /// the connection, not written: the receiver's credit already bounds what is in flight,
    /// and a round trip through the event loop per frame would hold the sender's next read
    /// (under emulation, a large share of a stream's time). A failed write closes the
    /// connection, which the next call sees. Throws `MuxError.reset` when the receiver gave
    /// up on the stream, `.closed` when the connection is gone.
    public func send(_ buffer: ByteBuffer) async throws {
        var buffer = buffer
        while buffer.readableBytes > 0 {
            let allowed = try await takeCredit(upTo: min(buffer.readableBytes, Self.chunk))
            guard let slice = buffer.readSlice(length: allowed) else { return }
            mux.write(MuxFrame(stream: stream, kind: .data, payload: slice)).whenFailure { [mux] error in
                mux.failAll(.closed)
            }
        }
    }

    /// Says the stream has ended, once the receiver has the stream (an end sent before would
    /// be dropped, and the receiver would wait for ever: a stdin that ended before the process
    /// started); without `waitingForReceiver`, at once (for a stream that will never be
    /// received). The stream's state is dropped.
    public func finish(waitingForReceiver: Bool = true) async throws {
        if waitingForReceiver { try await waitForCredit(taking: false) }
        let reset = mux.state.withLock { state -> Bool in
            let reset = state.senders[stream]?.reset ?? false
            state.senders[stream] = nil
            return reset
        }
        if reset { return }
        try await mux.write(MuxFrame(stream: stream, kind: .eof)).get()
    }

    private func takeCredit(upTo wanted: Int) async throws -> Int {
        while true {
            let taken: Int? = try mux.state.withLock { state in
                if let closed = state.closed { throw closed }
                var send = state.senders[stream] ?? MuxState.Send()
                if send.reset { throw MuxError.reset }
                guard send.credit > 0 else { return nil }
                let n = min(send.credit, wanted)
                send.credit -= n
                state.senders[stream] = send
                return n
            }
            if let taken { return taken }
            try await waitForCredit(taking: true)
        }
    }

    /// Waits until the receiver grants credit (`taking`: credit is there now; else: it was
    /// granted once, the stream is open). Returns at once for a reset stream when not taking.
    private func waitForCredit(taking: Bool) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let ready: Result<Void, any Error>? = mux.state.withLock { state in
                if let closed = state.closed { return .failure(closed) }
                var send = state.senders[stream] ?? MuxState.Send()
                if send.reset { return taking ? .failure(MuxError.reset) : .success(()) }
                if taking ? send.credit > 0 : send.opened { return .success(()) }
                send.waiter = continuation
                state.senders[stream] = send
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}

/// The receiving half of one stream, as an async sequence of chunks that ends at the
/// sender's end of stream. Each chunk taken grants the sender as many bytes again.
public struct MuxReceiver: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer
    let mux: StdioMux
    public let stream: UInt32

    public struct AsyncIterator: AsyncIteratorProtocol {
        let receiver: MuxReceiver
        public mutating func next() async throws -> ByteBuffer? { try await receiver.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(receiver: self) }

    /// Stops receiving: the sender is told to stop and anything buffered is dropped.
    public func reset() {
        let waiter = mux.state.withLock { state -> CheckedContinuation<ByteBuffer?, any Error>? in
            state.receivers.removeValue(forKey: stream)?.waiter
        }
        waiter?.resume(returning: nil)
        mux.write(MuxFrame(stream: stream, kind: .reset))
    }

    func next() async throws -> ByteBuffer? {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ByteBuffer?, any Error>) in
            let ready: Result<ByteBuffer?, any Error>? = mux.state.withLock { state in
                guard var receive = state.receivers[stream] else {
                    return state.closed.map { .failure($0) } ?? .success(nil)
                }
                if receive.head < receive.chunks.count {
                    let chunk = receive.chunks[receive.head]
                    receive.head += 1
                    if receive.head == receive.chunks.count { receive.chunks.removeAll(keepingCapacity: true); receive.head = 0 }
                    state.receivers[stream] = receive
                    return .success(chunk)
                }
                if receive.eof {
                    state.receivers[stream] = nil
                    return .success(nil)
                }
                receive.waiter = continuation
                state.receivers[stream] = receive
                return nil
            }
            if let ready {
                if case let .success(chunk?) = ready { mux.consumed(stream: stream, bytes: chunk.readableBytes) }
                continuation.resume(with: ready)
            }
        }
    }
}

extension StdioMux {
    /// The consumer took `bytes` of `stream`: grant them to the sender again, in batches of a
    /// quarter window, or at once when the sender has nothing left to send on (so it never
    /// waits for a batch that cannot fill).
    func consumed(stream: UInt32, bytes: Int) {
        guard bytes > 0 else { return }
        let grant = state.withLock { state -> Int in
            guard var receive = state.receivers[stream], !receive.eof else { return 0 }
            receive.consumedUngranted += bytes
            let buffered = receive.chunks[receive.head...].reduce(0) { $0 + $1.readableBytes }
            var grant = 0
            if receive.consumedUngranted >= receive.regrantThreshold || receive.granted + buffered == 0 {
                grant = receive.consumedUngranted
                receive.consumedUngranted = 0
                receive.granted += grant
            }
            state.receivers[stream] = receive
            return grant
        }
        if grant > 0 { write(.credit(stream: stream, bytes: grant)) }
    }
}
