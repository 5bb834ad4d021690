import Foundation
import Testing
import TTRPC
import TTRPCPeer

/// Skiff's ttrpc against containerd's own Go ttrpc (the shared `ttrpc-peer` tool), both ways.
/// The Go peer is built from Debian's packages by scripts/build-ttrpc-peer; when it cannot be
/// built these tests fail rather than skip.
@Suite(.serialized) struct InteropTests {
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Path of the Go peer binary: $TTRPC_PEER, or built (once) by scripts/build-ttrpc-peer.
    static func goPeer() throws -> String {
        if let path = ProcessInfo.processInfo.environment["TTRPC_PEER"] { return path }
        let (status, output) = try run(packageRoot.appendingPathComponent("scripts/build-ttrpc-peer").path, [])
        guard status == 0 else { throw InteropFailure("scripts/build-ttrpc-peer failed: \(output)") }
        return output.trimmingCharacters(in: .whitespacesAndNewlines).components(separatedBy: "\n").last ?? ""
    }

    static func run(_ executable: String, _ arguments: [String]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

    static func socketPath() -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("skiff-interop-\(UUID().uuidString.prefix(8))")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent("peer.sock").path
    }

    @Test func goClientPassesAllTenChecksAgainstTheSwiftServer() async throws {
        let peer = try Self.goPeer()
        let path = Self.socketPath()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let listener = try await TTRPCServer(services: [PeerService()]).listen(unixSocket: path)
        defer { Task { try? await listener.close() } }
        let (status, output) = try await Task.detached { try Self.run(peer, ["check", "-socket", path]) }.value
        #expect(output.contains("10 passed, 0 failed"), "\(output)")
        #expect(status == 0)
    }

    @Test func swiftClientPassesAllTenChecksAgainstTheGoServer() async throws {
        let peer = try Self.goPeer()
        let path = Self.socketPath()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let server = Process()
        server.executableURL = URL(fileURLWithPath: peer)
        server.arguments = ["serve", "-socket", path]
        try server.run()
        defer { server.terminate(); server.waitUntilExit() }
        var client: TTRPCClient?
        for _ in 0..<100 where client == nil {
            client = try? await TTRPCClient.connect(unixSocket: path)
            if client == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        let connected = try #require(client, "Go peer never listened on \(path)")
        let results = await PeerChecks.run(connected)
        await connected.close()
        #expect(results.count == 10)
        for result in results {
            #expect(result.passed, "\(result)")
        }
    }
}

struct InteropFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
