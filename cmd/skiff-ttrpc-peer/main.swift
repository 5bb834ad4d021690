// skiff-ttrpc-peer: Skiff's ttrpc as the counterpart of containerd's `ttrpc-peer` tool.
//   serve --socket PATH                 serve ttrpc.peer.v1.Peer
//   check --socket PATH                 run the ten interop checks as a client
//   bench --socket PATH [--calls N] [--concurrency C] [--size B]
import ArgumentParser
import NIOPosix
import TTRPC
import TTRPCPeer

#if canImport(Glibc)
import Glibc
#endif

@main
struct SkiffTTRPCPeer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "skiff-ttrpc-peer",
        abstract: "Skiff's ttrpc as a reference peer: serve, check or bench ttrpc.peer.v1.Peer.",
        subcommands: [Serve.self, Check.self, Bench.self])
}

struct SocketOption: ParsableArguments {
    @Option(name: .long, help: "Unix socket path.")
    var socket: String
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve the Peer service on a unix socket.")
    @OptionGroup var options: SocketOption

    func run() async throws {
        let listener = try await TTRPCServer(services: [PeerService()]).listen(unixSocket: options.socket)
        try await listener.waitClosed()
    }
}

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the interop checks against a Peer server.")
    @OptionGroup var options: SocketOption

    func run() async throws {
        let client = try await TTRPCClient.connect(unixSocket: options.socket)
        let results = await PeerChecks.run(client)
        await client.close()
        for result in results { print(result) }
        let failed = results.filter { !$0.passed }.count
        print("\(results.count - failed) passed, \(failed) failed")
        if failed > 0 { throw ExitCode(1) }
    }
}

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Time Echo calls against a Peer server.")
    @OptionGroup var options: SocketOption
    @Option var calls = 20000
    @Option var concurrency = 1
    @Option var size = 64

    func run() async throws {
        let client = try await TTRPCClient.connect(unixSocket: options.socket)
        let figures = try await PeerBench.run(client, calls: calls, concurrency: concurrency, size: size)
        await client.close()
        print(figures)
    }
}
