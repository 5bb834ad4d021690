#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOCore
import NIOPosix
import SwiftProtobuf
import Testing
@testable import TTRPC

/// Calls made with Skiff's client against Skiff's server: statuses, metadata, deadlines,
/// cancellation, concurrency, size limits and connection loss.
@Suite struct ClientTests {
    @Test func statusThrownByAHandlerReachesTheCallerWithCodeAndMessage() async throws {
        try await withClient([ProbeService()]) { client in
            await #expect(throws: TTRPCStatus(.failedPrecondition, "refused by probe")) {
                _ = try await client.probe("Refuse")
            }
            do {
                _ = try await client.probe("Crash")
                Issue.record("call succeeded")
            } catch let status as TTRPCStatus {
                #expect(status.code == .unknown)
            }
        }
    }

    @Test func typedUnaryMethodsDecodeAndEncodeMessages() async throws {
        try await withClient([ProbeService()]) { client in
            let out: Google_Protobuf_Int64Value = try await client.unary(
                service: ProbeService.name, method: "Double", request: Google_Protobuf_Int64Value(21))
            #expect(out.value == 42)
            // Bytes that are not an Int64Value are refused before the handler runs.
            await #expect(throws: TTRPCStatus.self) {
                _ = try await client.call(service: ProbeService.name, method: "Double", payload: Data([0x08]))
            }
        }
    }

    @Test func metadataKeepsRepeatedKeysAndOrder() async throws {
        try await withClient([ProbeService()]) { client in
            var metadata: TTRPCMetadata = ["containerd-namespace-ttrpc": "k8s.io"]
            metadata.append("1", for: "multi")
            metadata.append("2", for: "multi")
            let out = try await client.probe("Metadata", options: TTRPCCallOptions(metadata: metadata))
            #expect(out == "containerd-namespace-ttrpc=k8s.io\nmulti=1\nmulti=2")
        }
    }

    @Test func clientTimeoutFailsTheCallDeadlineExceeded() async throws {
        try await withClient([ProbeService()]) { client in
            let start = ContinuousClock.now
            await #expect(throws: TTRPCStatus(.deadlineExceeded, "context deadline exceeded")) {
                _ = try await client.probe("Sleep", "10000", options: TTRPCCallOptions(timeout: .milliseconds(100)))
            }
            #expect(ContinuousClock.now - start < .seconds(5))
            let after = try await client.probe("Echo", "after")
            #expect(after == "after")
        }
    }

    @Test func cancellingTheCallingTaskFailsTheCallCancelledAndTheConnectionCarriesOn() async throws {
        try await withClient([ProbeService()]) { client in
            let call = Task { try await client.probe("Sleep", "10000") }
            try await Task.sleep(for: .milliseconds(100))
            call.cancel()
            do {
                _ = try await call.value
                Issue.record("cancelled call succeeded")
            } catch let status as TTRPCStatus {
                #expect(status.code == .cancelled)
            }
            #expect(try await client.probe("Echo", "still") == "still")
        }
    }

    @Test func manyCallsInFlightOnOneConnectionEachGetTheirOwnAnswer() async throws {
        try await withClient([ProbeService()]) { client in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<500 {
                    group.addTask {
                        let sleep = i % 10 == 0 ? "Sleep" : "Echo"
                        let text = sleep == "Sleep" ? "\(i % 50)" : "call-\(i)"
                        let answer = try await client.probe(sleep, text)
                        #expect(answer == text)
                    }
                }
                try await group.waitForAll()
            }
        }
    }

    @Test func requestOverFourMiBIsRefusedLocallyResourceExhausted() async throws {
        try await withClient([ProbeService()]) { client in
            do {
                _ = try await client.call(service: ProbeService.name, method: "Echo", payload: Data(count: TTRPCFrame.maxPayloadLength + 1))
                Issue.record("oversized request was sent")
            } catch let status as TTRPCStatus {
                #expect(status.code == .resourceExhausted)
            }
            #expect(try await client.probe("Echo", "ok") == "ok")
        }
    }

    @Test func answerOverFourMiBFailsThatCallResourceExhaustedOnly() async throws {
        try await withClient([ProbeService()]) { client in
            do {
                _ = try await client.probe("Big", "\(TTRPCFrame.maxPayloadLength + 10)")
                Issue.record("oversized answer arrived")
            } catch let status as TTRPCStatus {
                #expect(status.code == .resourceExhausted)
            }
            #expect(try await client.probe("Big", "1000").utf8.count == 1000)
        }
    }

    @Test func callsWaitingWhenTheServerGoesAwayFailUnavailable() async throws {
        let (serverChannel, client) = try await connectedPair()
        let call = Task { try await client.probe("Sleep", "10000") }
        try await Task.sleep(for: .milliseconds(100))
        try await serverChannel.close()
        do {
            _ = try await call.value
            Issue.record("call survived its connection")
        } catch let status as TTRPCStatus {
            #expect(status.code == .unavailable)
        }
        // The next call fails at once with the same code; its message is how the connection
        // ended ("closed", or a reset when the server went with data unread).
        do {
            _ = try await client.probe("Echo")
            Issue.record("a call on a dead connection succeeded")
        } catch let status as TTRPCStatus {
            #expect(status.code == .unavailable, "\(status)")
        }
    }

    @Test func listenerCloseRemovesTheSocketFile() async throws {
        let path = temporarySocketPath()
        defer { removeSocketDirectory(path) }
        let listener = try await TTRPCServer(services: [ProbeService()]).listen(unixSocket: path)
        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        try await listener.close()
        #expect(stat(path, &info) != 0)
    }

    @Test func serverAndClientWorkOverAnyConnectedByteStream() async throws {
        let (serverChannel, client) = try await connectedPair()
        let answer = try await client.probe("Echo", "over a pipe")
        #expect(answer == "over a pipe")
        await client.close()
        try? await serverChannel.close()
    }

    /// The agent's port may hold the host's first request before the server is in place: a
    /// channel made with autoRead off keeps it, and `serve` starts reading once it can answer.
    @Test func requestWaitingBeforeServeStartsIsAnswered() async throws {
        var fds: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else {
            throw TTRPCStatus(.internal, "socketpair failed")
        }
        let group = MultiThreadedEventLoopGroup.singleton
        let client = try await TTRPCClient.attach(to: try await NIOPipeBootstrap(group: group).takingOwnershipOfDescriptor(inputOutput: fds[1]).get())
        let answer = Task { try await client.probe("Echo", "sent early", options: TTRPCCallOptions(timeout: .seconds(5))) }
        let serverChannel = try await NIOPipeBootstrap(group: group)
            .channelOption(.autoRead, value: false)
            .takingOwnershipOfDescriptor(inputOutput: fds[0]).get()
        try await Task.sleep(for: .milliseconds(50))
        try await TTRPCServer(services: [ProbeService()]).serve(on: serverChannel)
        #expect(try await answer.value == "sent early")
        await client.close()
        try? await serverChannel.close()
    }

    /// A server and a client joined by a socketpair, standing in for the agent's virtio-serial
    /// port: no listener and no socket path, just two connected ends wrapped as NIO channels.
    private func connectedPair() async throws -> (any Channel, TTRPCClient) {
        var fds: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else {
            throw TTRPCStatus(.internal, "socketpair failed")
        }
        let group = MultiThreadedEventLoopGroup.singleton
        let serverChannel = try await NIOPipeBootstrap(group: group).takingOwnershipOfDescriptor(inputOutput: fds[0]).get()
        try await TTRPCServer(services: [ProbeService()]).serve(on: serverChannel)
        let clientChannel = try await NIOPipeBootstrap(group: group).takingOwnershipOfDescriptor(inputOutput: fds[1]).get()
        return (serverChannel, try await TTRPCClient.attach(to: clientChannel))
    }
}
