import NIOCore
import NIOPosix
import Testing
@testable import StdioMux

/// Two multiplexers joined by a socket pair, as the shim and the agent are by a serial port.
private func withMuxPair(_ body: (StdioMux, StdioMux) async throws -> Void) async throws {
    var fds: [Int32] = [-1, -1]
    #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
    let group = MultiThreadedEventLoopGroup.singleton
    let a = try await NIOPipeBootstrap(group: group).takingOwnershipOfDescriptor(inputOutput: fds[0]).get()
    let b = try await NIOPipeBootstrap(group: group).takingOwnershipOfDescriptor(inputOutput: fds[1]).get()
    let host = try await StdioMux.attach(to: a)
    let guest = try await StdioMux.attach(to: b)
    do {
        try await body(host, guest)
    } catch {
        await host.close(); await guest.close()
        throw error
    }
    await host.close(); await guest.close()
}

private func collect(_ receiver: MuxReceiver) async throws -> [UInt8] {
    var bytes: [UInt8] = []
    for try await chunk in receiver { bytes += chunk.readableBytesView }
    return bytes
}

@Suite(.timeLimit(.minutes(1))) struct StdioMuxTests {
    @Test func helloReachesAWaiterWhetherItCameBeforeOrAfterTheAsking() async throws {
        try await withMuxPair { host, guest in
            async let early = host.hello()
            try await Task.sleep(for: .milliseconds(20))
            try await guest.sendHello("skiff-agent 1")
            #expect(try await early == "skiff-agent 1")
            // Asked after it came: answered at once.
            #expect(try await host.hello() == "skiff-agent 1")
        }
    }

    @Test func aHelloWaiterFailsWhenTheConnectionCloses() async throws {
        try await withMuxPair { host, guest in
            let waiting = Task { try await host.hello() }
            try await Task.sleep(for: .milliseconds(20))
            await guest.close()
            await #expect(throws: MuxError.self) { _ = try await waiting.value }
        }
    }

    @Test func bytesArriveInOrderFollowedByEndOfStream() async throws {
        try await withMuxPair { host, guest in
            let receiver = host.receiver(stream: 3, window: 1000)
            let payload = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            async let received = collect(receiver)
            let sender = guest.sender(stream: 3)
            try await sender.send(ByteBuffer(bytes: payload))
            try await sender.finish()
            #expect(try await received == payload)
        }
    }

    @Test func anEndSentBeforeTheReceiverHasTheStreamWaitsForItAndArrives() async throws {
        try await withMuxPair { host, guest in
            // An empty stdin ends before the process (the receiver) exists.
            let sender = host.sender(stream: 9)
            let finished = Task { try await sender.finish(); return true }
            try await Task.sleep(for: .milliseconds(100))
            let receiver = guest.receiver(stream: 9)
            #expect(try await finished.value)
            #expect(try await collect(receiver).isEmpty, "the stream ends: its end was not dropped")
        }
    }

    @Test func aSenderWithoutCreditWaitsUntilTheReceiverConsumes() async throws {
        try await withMuxPair { host, guest in
            let receiver = host.receiver(stream: 5, window: 10)
            let sender = guest.sender(stream: 5)
            let sent = Task { try await sender.send(ByteBuffer(bytes: Array(repeating: 7, count: 25))); return true }
            // Only the granted 10 bytes can cross: the rest waits for credit.
            func buffered() -> Int { host.state.withLock { $0.receivers[5]?.chunks.reduce(0) { $0 + $1.readableBytes } ?? -1 } }
            for _ in 0..<200 where buffered() < 10 { try await Task.sleep(for: .milliseconds(10)) }
            try await Task.sleep(for: .milliseconds(100))
            #expect(buffered() == 10)
            var iterator = receiver.makeAsyncIterator()
            var total = 0
            while total < 25, let chunk = try await iterator.next() { total += chunk.readableBytes }
            #expect(total == 25)
            #expect(try await sent.value)
        }
    }

    @Test func creditReturnsInQuarterWindowsNotAFrameAChunk() async throws {
        try await withMuxPair { host, guest in
            let receiver = host.receiver(stream: 3, window: 1 << 20)
            async let received = collect(receiver)
            let sender = guest.sender(stream: 3)
            for _ in 0..<64 { try await sender.send(ByteBuffer(bytes: Array(repeating: 3, count: 64 << 10))) }
            try await sender.finish()
            #expect(try await received.count == 4 << 20)
            let frames = guest.state.withLock { $0.creditFramesReceived }
            // The first grant, then one per 256 KiB consumed (and a last partial one at most).
            #expect(frames >= 2 && frames <= 1 + 16 + 1, "\(frames) credit frames for 4 MiB in 64 KiB chunks")
        }
    }

    @Test func aReceiverGrantsWhatIsLeftWhenTheSenderHasNoCreditLeft() async throws {
        try await withMuxPair { host, guest in
            // A window below the batch: every byte must still come back, or the sender waits for ever.
            let receiver = host.receiver(stream: 4, window: 3)
            async let received = collect(receiver)
            let sender = guest.sender(stream: 4)
            try await sender.send(ByteBuffer(bytes: Array(repeating: 4, count: 100)))
            try await sender.finish()
            #expect(try await received.count == 100)
        }
    }

    @Test func aSlowStreamDoesNotHoldUpAnother() async throws {
        try await withMuxPair { host, guest in
            _ = host.receiver(stream: 1, window: 4)   // never read
            let fast = host.receiver(stream: 2, window: 1 << 16)
            let stalled = Task { try await guest.sender(stream: 1).send(ByteBuffer(bytes: Array(repeating: 1, count: 100))) }
            async let received = collect(fast)
            let sender = guest.sender(stream: 2)
            try await sender.send(ByteBuffer(bytes: Array(repeating: 2, count: 300_000)))
            try await sender.finish()
            #expect(try await received.count == 300_000)
            stalled.cancel()
        }
    }

    @Test func resetStopsTheSenderWithAnError() async throws {
        try await withMuxPair { host, guest in
            let receiver = host.receiver(stream: 9, window: 4)
            receiver.reset()
            let sender = guest.sender(stream: 9)
            await #expect(throws: MuxError.reset) {
                try await sender.send(ByteBuffer(bytes: Array(repeating: 0, count: 1000)))
            }
        }
    }

    @Test func closingTheConnectionFailsWaitingStreams() async throws {
        try await withMuxPair { host, guest in
            let receiver = host.receiver(stream: 11, window: 4)
            let waiting = Task { try await collect(receiver) }
            try await Task.sleep(for: .milliseconds(50))
            await guest.close()
            await #expect(throws: MuxError.self) { try await waiting.value }
        }
    }

    @Test func dataBeyondTheGrantedCreditClosesTheConnection() async throws {
        try await withMuxPair { host, guest in
            let receiver = host.receiver(stream: 13, window: 4)
            // A misbehaving peer writes straight past the flow control.
            try await guest.write(MuxFrame(stream: 13, kind: .data, payload: ByteBuffer(bytes: Array(repeating: 1, count: 64)))).get()
            await host.waitClosed()
            await #expect(throws: MuxError.self) { _ = try await collect(receiver) }
        }
    }
}
