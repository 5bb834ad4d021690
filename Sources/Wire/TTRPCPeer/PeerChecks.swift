#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import SwiftProtobuf
import TTRPC

/// The ten behaviours `ttrpc-peer check` asks of a Peer server, asked by Skiff's client:
/// run against containerd's Go server they prove our client; the Go checker run against our
/// server proves the server.
public enum PeerChecks {
    /// The outcome of one check: nil error means it passed.
    public struct Result: Sendable, CustomStringConvertible {
        public let name: String
        public let failure: String?
        public var passed: Bool { failure == nil }
        public var description: String { failure.map { "FAIL \(name): \($0)" } ?? "PASS \(name)" }
    }

    public static func run(_ client: TTRPCClient) async -> [Result] {
        let peer = Ttrpc_Peer_V1_PeerClient(client)
        var results: [Result] = []
        func report(_ name: String, _ body: () async throws -> Void) async {
            do {
                try await body()
                results.append(Result(name: name, failure: nil))
            } catch {
                results.append(Result(name: name, failure: "\(error)"))
            }
        }
        await report("echo empty") { try await echo(peer, count: 0) }
        await report("echo 1 KiB") { try await echo(peer, count: 1 << 10) }
        await report("echo 3.5 MiB") { try await echo(peer, count: 7 << 19) }
        await report("status code and message") {
            do {
                _ = try await peer.fail(Google_Protobuf_StringValue("5:no such thing"))
                throw CheckFailure("call succeeded")
            } catch let status as TTRPCStatus {
                guard status.code == .notFound, status.message == "no such thing" else { throw CheckFailure("got \(status)") }
            }
        }
        await report("unknown method is Unimplemented") {
            try await expectUnimplemented(client, service: Ttrpc_Peer_V1_PeerClient.serviceName, method: "NoSuchMethod")
        }
        await report("unknown service is Unimplemented") {
            try await expectUnimplemented(client, service: "no.such.Service", method: "Echo")
        }
        await report("request timeout reaches the server") {
            let start = ContinuousClock.now
            do {
                _ = try await peer.sleep(Google_Protobuf_Int64Value(5000), options: TTRPCCallOptions(timeout: .milliseconds(200)))
                throw CheckFailure("sleep of 5 s returned within a 200 ms timeout")
            } catch let status as TTRPCStatus {
                let elapsed = ContinuousClock.now - start
                guard status.code == .deadlineExceeded, elapsed < .seconds(3) else {
                    throw CheckFailure("got \(status) after \(elapsed)")
                }
            }
        }
        await report("metadata reaches the server") {
            var metadata: TTRPCMetadata = ["containerd-namespace-ttrpc": "default"]
            metadata.append("a", for: "multi")
            metadata.append("b", for: "multi")
            let out = try await peer.metadata(Google_Protobuf_Empty(), options: TTRPCCallOptions(metadata: metadata))
            let want = "containerd-namespace-ttrpc=default\nmulti=a\nmulti=b"
            guard out.value == want else { throw CheckFailure("got \(out.value.debugDescription), want \(want.debugDescription)") }
        }
        await report("a slow call does not block others on the connection") {
            let slow = Task { try await peer.sleep(Google_Protobuf_Int64Value(1500)) }
            try await Task.sleep(for: .milliseconds(50))
            let start = ContinuousClock.now
            try await echo(peer, count: 16)
            let waited = ContinuousClock.now - start
            guard waited < .seconds(1) else { throw CheckFailure("echo waited \(waited) behind a sleeping call") }
            _ = try await slow.value
        }
        await report("256 concurrent calls all answered correctly") {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<256 {
                    group.addTask {
                        let input = Data("call-\(i)".utf8)
                        let out = try await peer.echo(Google_Protobuf_BytesValue(input))
                        guard out.value == input else { throw CheckFailure("call \(i) answered with \(out.value)") }
                    }
                }
                try await group.waitForAll()
            }
        }
        return results
    }

    private static func echo(_ peer: Ttrpc_Peer_V1_PeerClient, count: Int) async throws {
        let input = Data((0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        let out = try await peer.echo(Google_Protobuf_BytesValue(input))
        guard out.value == input else {
            throw CheckFailure("echo of \(count) bytes came back as \(out.value.count) different bytes")
        }
    }

    private static func expectUnimplemented(_ client: TTRPCClient, service: String, method: String) async throws {
        do {
            let _: Google_Protobuf_Empty = try await client.unary(service: service, method: method, request: Google_Protobuf_Empty())
            throw CheckFailure("call succeeded")
        } catch let status as TTRPCStatus {
            guard status.code == .unimplemented else { throw CheckFailure("got \(status)") }
        }
    }
}

struct CheckFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
