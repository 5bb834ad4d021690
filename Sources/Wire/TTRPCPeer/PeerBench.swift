import SwiftProtobuf
import TTRPC
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif

/// The client half of the ttrpc benchmark: `calls` Echo calls of `size` bytes, `concurrency`
/// at a time over one connection, as `ttrpc-peer bench` makes them.
public enum PeerBench {
    public struct Figures: Sendable, CustomStringConvertible {
        public let calls: Int
        public let concurrency: Int
        public let size: Int
        public let seconds: Double
        public var callsPerSecond: Double { Double(calls) / seconds }
        /// The same line `ttrpc-peer bench` prints.
        public var description: String {
            "calls=\(calls) concurrency=\(concurrency) size=\(size) seconds=\(Self.format(seconds, 3)) calls_per_s=\(Self.format(callsPerSecond, 0))"
        }

        static func format(_ value: Double, _ decimals: Int) -> String {
            var scale = 1.0
            for _ in 0..<decimals { scale *= 10 }
            let rounded = (value * scale).rounded() / scale
            if decimals == 0 { return String(Int(rounded)) }
            let whole = Int(rounded)
            var fraction = String(Int(((rounded - Double(whole)) * scale).rounded()))
            while fraction.count < decimals { fraction = "0" + fraction }
            return "\(whole).\(fraction)"
        }
    }

    public static func run(_ client: TTRPCClient, calls: Int, concurrency: Int, size: Int) async throws -> Figures {
        let peer = Ttrpc_Peer_V1_PeerClient(client)
        let request = Google_Protobuf_BytesValue(Data(count: size))
        let per = calls / max(concurrency, 1)
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<concurrency {
                group.addTask(executorPreference: client.executor) {
                    for _ in 0..<per { _ = try await peer.echo(request) }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - start
        let (s, atto) = elapsed.components
        return Figures(calls: per * concurrency, concurrency: concurrency, size: size, seconds: Double(s) + Double(atto) / 1e18)
    }
}
