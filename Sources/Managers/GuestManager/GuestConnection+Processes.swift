import AgentAPI
import NIOCore
import StdioMux

extension GuestConnection {
    /// What a finished command printed and how it ended.
    public struct CommandResult: Sendable {
        public var exitStatus: UInt32
        public var stdout: [UInt8]
        public var stderr: [UInt8]
    }

    /// Runs a command in the VM (outside any container), collects its output and waits for
    /// it. For diagnostics and tests; containers' processes stream instead.
    public func run(_ args: [String], id: String, stdin: [UInt8] = []) async throws -> CommandResult {
        let (inID, outID, errID) = (nextStreamID(), nextStreamID(), nextStreamID())
        let out = stdio.receiver(stream: outID)
        let err = stdio.receiver(stream: errID)
        _ = try await agent.createProcess(.with {
            $0.id = id
            $0.args = args
            $0.stdinStream = inID
            $0.stdoutStream = outID
            $0.stderrStream = errID
        })
        let sender = stdio.sender(stream: inID)
        if !stdin.isEmpty { try await sender.send(ByteBuffer(bytes: stdin)) }
        try await sender.finish()
        async let stdout = Self.collect(out)
        async let stderr = Self.collect(err)
        let exit = try await agent.waitProcess(.with { $0.id = id })
        let result = CommandResult(exitStatus: exit.exitStatus, stdout: try await stdout, stderr: try await stderr)
        _ = try await agent.deleteProcess(.with { $0.id = id })
        return result
    }

    static func collect(_ receiver: MuxReceiver) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        for try await chunk in receiver { bytes += chunk.readableBytesView }
        return bytes
    }
}
