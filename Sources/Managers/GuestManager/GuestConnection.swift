import AgentAPI
import FoundationEssentials
import Glibc
import NIOCore
import NIOPosix
import StdioMux
import Synchronization
import TTRPC

/// The host's connection to one VM's guest agent: the agent API client (control channel)
/// and the multiplexed process stdio (stdio channel).
///
/// `connect` is how a booting VM is awaited: it connects to QEMU's ends of the two ports and
/// sends a Ping that the agent answers as soon as it serves. It gives up with the tail of the
/// console log when the boot takes longer than the timeout or the VM exits first.
public final class GuestConnection: Sendable {
    public let agent: Skiff_Agent_V1_AgentClient
    public let stdio: StdioMux
    private let streamIDs = Mutex<UInt32>(1)

    init(agent: Skiff_Agent_V1_AgentClient, stdio: StdioMux) {
        self.agent = agent
        self.stdio = stdio
    }

    /// What `connect` needs to know about the VM while it waits.
    public struct BootWatch: Sendable {
        /// The end of the console log, which explains a failed boot.
        public var consoleTail: @Sendable () -> String
        /// How the VM ended, if it has; polled while waiting.
        public var vmExit: @Sendable () async -> String?

        public init(consoleTail: @escaping @Sendable () -> String, vmExit: @escaping @Sendable () async -> String?) {
            self.consoleTail = consoleTail
            self.vmExit = vmExit
        }
    }

    /// Connects to the agent's control and stdio sockets and waits until the agent answers.
    public static func connect(
        controlSocket: String, stdioSocket: String, timeout: Duration, watch: BootWatch
    ) async throws(GuestManagerError) -> GuestConnection {
        let deadline = ContinuousClock.now + timeout
        do {
            return try await withThrowingTaskGroup(of: GuestConnection?.self) { group in
                group.addTask {
                    let client = try await TTRPCClient.connect(unixSocket: controlSocket)
                    let stdio: StdioMux
                    do {
                        stdio = try await StdioMux.connect(unixSocket: stdioSocket)
                    } catch {
                        await client.close()
                        throw error
                    }
                    let agent = Skiff_Agent_V1_AgentClient(client)
                    do {
                        // The agent says hello on the stdio channel once it serves both: from
                        // then on nothing the host sends is lost to a port not yet open.
                        _ = try await withTaskCancellationHandler {
                            try await stdio.hello()
                        } onCancel: {
                            Task { await stdio.close() }
                        }
                    } catch {
                        await client.close()
                        await stdio.close()
                        throw error
                    }
                    return GuestConnection(agent: agent, stdio: stdio)
                }
                group.addTask {
                    while ContinuousClock.now < deadline {
                        if let how = await watch.vmExit() {
                            throw GuestManagerError.vmExitedDuringBoot(how, console: watch.consoleTail())
                        }
                        try await Task.sleep(for: .milliseconds(20))
                    }
                    throw GuestManagerError.bootTimedOut(after: timeout, console: watch.consoleTail())
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let connection = first else {
                    throw GuestManagerError.disconnected("no answer")
                }
                return connection
            }
        } catch let error as GuestManagerError {
            throw error
        } catch let status as TTRPCStatus where status.code == .deadlineExceeded {
            throw .bootTimedOut(after: timeout, console: watch.consoleTail())
        } catch {
            // A connection dropped during boot usually means QEMU went away: say so once its
            // exit is known, with the console that tells why.
            let settle = ContinuousClock.now + .seconds(2)
            while ContinuousClock.now < settle {
                if let how = await watch.vmExit() {
                    throw .vmExitedDuringBoot(how, console: watch.consoleTail())
                }
                try? await Task.sleep(for: .milliseconds(20))
            }
            throw .disconnected("\(error); console log ends with:\n\(watch.consoleTail())")
        }
    }

    /// A fresh stream id for a process's stdio.
    public func nextStreamID() -> UInt32 {
        streamIDs.withLock { id in
            defer { id += 1 }
            return id
        }
    }

    /// Closes both channels; calls in flight fail.
    public func close() async {
        await agent.client.close()
        await stdio.close()
    }
}
