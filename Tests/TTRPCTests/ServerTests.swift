import Foundation
import NIOCore
import SwiftProtobuf
import Testing
@testable import TTRPC

/// The server as a misbehaving or demanding client sees it, over a real unix socket.
@Suite struct ServerTests {
    @Test func oversizedRequestIsAnsweredResourceExhaustedAndTheConnectionSurvives() async throws {
        try await withServer([ProbeService()]) { path in
            let raw = try await RawConnection(path: path)
            var big = ByteBuffer()
            big.writeInteger(UInt32(TTRPCFrame.maxPayloadLength + 1))
            big.writeInteger(UInt32(1))
            big.writeInteger(TTRPCFrame.Kind.request.rawValue)
            big.writeInteger(UInt8(0))
            big.writeRepeatingByte(0, count: TTRPCFrame.maxPayloadLength + 1)
            try await raw.send(big)
            let first = try #require(try await raw.nextResponse())
            #expect(first.streamID == 1)
            #expect(first.response.status.code == TTRPCStatus.Code.resourceExhausted.rawValue)
            #expect(first.response.status.message.contains("exceed maximum message size"))

            try await raw.sendRequest(streamID: 3, service: ProbeService.name, method: "Echo", payload: Data("still here".utf8))
            let second = try #require(try await raw.nextResponse())
            #expect(second.streamID == 3)
            #expect(second.response.status.code == 0)
            #expect(second.response.payload == Data("still here".utf8))
            await raw.close()
        }
    }

    @Test func frameOfUnknownTypeClosesTheConnection() async throws {
        try await withServer([ProbeService()]) { path in
            let raw = try await RawConnection(path: path)
            try await raw.send(TTRPCFrame(streamID: 1, type: 0x42, payload: ByteBuffer(string: "garbage")))
            #expect(try await raw.nextResponse() == nil)
            // The server itself is unharmed: a new connection is served.
            let client = try await TTRPCClient.connect(unixSocket: path)
            #expect(try await client.probe("Echo", "x") == "x")
            await client.close()
        }
    }

    @Test func randomBytesNeverCrashTheServer() async throws {
        try await withServer([ProbeService()]) { path in
            var generator = SystemRandomNumberGenerator()
            for _ in 0..<20 {
                let raw = try await RawConnection(path: path)
                let junk = (0..<Int.random(in: 1...200, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
                try? await raw.send(ByteBuffer(bytes: junk))
                await raw.close()
            }
            let client = try await TTRPCClient.connect(unixSocket: path)
            #expect(try await client.probe("Echo", "alive") == "alive")
            await client.close()
        }
    }

    @Test func evenStreamIDIsRefusedInvalidArgument() async throws {
        try await withServer([ProbeService()]) { path in
            let raw = try await RawConnection(path: path)
            try await raw.sendRequest(streamID: 2, service: ProbeService.name, method: "Echo")
            let answer = try #require(try await raw.nextResponse())
            #expect(answer.streamID == 2)
            #expect(answer.response.status.code == TTRPCStatus.Code.invalidArgument.rawValue)
            await raw.close()
        }
    }

    @Test func undecodableRequestIsRefusedInvalidArgument() async throws {
        try await withServer([ProbeService()]) { path in
            let raw = try await RawConnection(path: path)
            try await raw.send(TTRPCFrame(streamID: 1, kind: .request, payload: ByteBuffer(bytes: [0x0A, 0xFF])))
            let answer = try #require(try await raw.nextResponse())
            #expect(answer.response.status.code == TTRPCStatus.Code.invalidArgument.rawValue)
            await raw.close()
        }
    }

    @Test func answersGoOutInTheOrderCallsFinish() async throws {
        try await withServer([ProbeService()]) { path in
            let raw = try await RawConnection(path: path)
            // The first call holds until its gate opens, which happens only after the second
            // call's answer is in: the answers must come in the order the calls finish.
            let gate = "order-\(UUID().uuidString)"
            try await raw.sendRequest(streamID: 1, service: ProbeService.name, method: "Hold", payload: Data(gate.utf8))
            try await raw.sendRequest(streamID: 3, service: ProbeService.name, method: "Echo", payload: Data("fast".utf8))
            let first = try #require(try await raw.nextResponse())
            await ProbeGates.shared.open(gate)
            let second = try #require(try await raw.nextResponse())
            #expect(first.streamID == 3)
            #expect(second.streamID == 1)
            #expect(second.response.payload == Data(gate.utf8))
            await raw.close()
        }
    }

    @Test func requestTimeoutBecomesADeadlineTheHandlerSees() async throws {
        try await withClient([ProbeService()]) { client in
            #expect(try await client.probe("Deadline") == "none")
            let left = try #require(Int(try await client.probe("Deadline", options: TTRPCCallOptions(timeout: .seconds(30)))))
            #expect(left > 25_000 && left <= 30_000)
        }
    }

    @Test func handlerStillRunningAtTheDeadlineIsCancelledAndAnswersDeadlineExceeded() async throws {
        try await withServer([ProbeService()]) { path in
            let raw = try await RawConnection(path: path)
            var request = Ttrpc_Request()
            request.service = ProbeService.name
            request.method = "Sleep"
            request.payload = Data("10000".utf8)
            request.timeoutNano = 100_000_000
            let start = ContinuousClock.now
            try await raw.send(TTRPCFrame(streamID: 1, kind: .request, payload: try request.serializedBuffer()))
            let answer = try #require(try await raw.nextResponse())
            #expect(answer.response.status.code == TTRPCStatus.Code.deadlineExceeded.rawValue)
            #expect(ContinuousClock.now - start < .seconds(5))
            await raw.close()
        }
    }

    @Test func unknownServiceAndMethodAreUnimplemented() async throws {
        try await withClient([ProbeService()]) { client in
            await #expect(throws: TTRPCStatus(.unimplemented, "service no.such.Service not found")) {
                _ = try await client.call(service: "no.such.Service", method: "Echo", payload: Data())
            }
            await #expect(throws: TTRPCStatus(.unimplemented, "method Nope not found in service \(ProbeService.name)")) {
                _ = try await client.probe("Nope")
            }
        }
    }
}
