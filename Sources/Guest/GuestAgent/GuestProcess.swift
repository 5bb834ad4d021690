import CSkiffSys
import Glibc
import NIOCore
import NIOPosix
import StdioMux
import Synchronization

/// One process the agent started: its stdio pumps between the process's descriptors and the
/// stdio channel, and its exit.
///
/// Output is read only as fast as the host grants credit, so a slow reader on the host
/// blocks the process's writes instead of filling the guest's memory. `wait` returns after
/// the exit *and* after stdout and stderr were drained to end of file (bounded by
/// `drainTimeout`, for a child that left the pipes open in a daemon), so no byte written just
/// before exiting is lost.
public final class GuestProcess: Sendable {
    public let id: String
    public let pid: pid_t
    public let terminal: Bool
    /// The container it runs in, for a container's init or exec.
    public let containerID: String?
    /// A duplicate of the terminal master, kept for resizing.
    private let resizeFD: Int32?
    private let exitTask: Task<WaitStatusAndTime, Never>
    private let pumps: Task<Void, Never>
    private let channels: Locked<[any Channel]>
    private let exitRecord: Locked<WaitStatusAndTime?>
    private let stdinReceiver: MuxReceiver?
    static let drainTimeout: Duration = .seconds(5)
    /// Reads of output in 256 KiB (the pipe holds 1 MiB): fewer, fuller frames on the stdio channel (the adaptive
    /// default starts at 2 KiB, and every frame costs emulated CPU in the guest).
    static let readSize = FixedSizeRecvByteBufferAllocator(capacity: 256 << 10)

    public struct WaitStatusAndTime: Sendable {
        public var status: WaitStatus
        /// Nanoseconds since the Unix epoch.
        public var exitedAtNs: UInt64
    }

    init(id: String, spawned: SpawnedProcess, reaper: ExitReaper, stdin: MuxReceiver?,
         stdout: MuxSender?, stderr: MuxSender?, group: any EventLoopGroup, containerID: String? = nil) {
        self.id = id
        self.containerID = containerID
        self.pid = spawned.pid
        self.terminal = spawned.terminal != nil
        self.resizeFD = spawned.terminal.map { dup($0) }.flatMap { $0 >= 0 ? $0 : nil }
        self.stdinReceiver = stdin
        let channels = Locked<[any Channel]>([])
        self.channels = channels
        let pid = spawned.pid
        let exitRecord = Locked<WaitStatusAndTime?>(nil)
        self.exitRecord = exitRecord
        exitTask = Task {
            let raw = await reaper.waitStatus(of: pid)
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            let result = WaitStatusAndTime(status: WaitStatus(raw: raw), exitedAtNs: UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec))
            exitRecord.withLock { $0 = result }
            return result
        }
        pumps = Task {
            await withTaskGroup(of: Void.self) { group2 in
                if let master = spawned.terminal {
                    group2.addTask {
                        await Self.pumpTerminal(master: master, stdin: stdin, stdout: stdout, group: group, channels: channels)
                    }
                } else {
                    if let fd = spawned.stdout {
                        group2.addTask { await Self.pumpOutput(fd: fd, to: stdout, group: group, channels: channels) }
                    }
                    if let fd = spawned.stderr {
                        group2.addTask { await Self.pumpOutput(fd: fd, to: stderr, group: group, channels: channels) }
                    }
                    if let fd = spawned.stdin {
                        group2.addTask { await Self.pumpInput(fd: fd, from: stdin, group: group, channels: channels) }
                    }
                }
            }
        }
    }

    /// The exit status, once the process has exited (without waiting for output).
    public func exitStatus() async -> WaitStatusAndTime { await exitTask.value }

    /// Waits for the exit and for the output to be drained.
    public func wait() async -> WaitStatusAndTime {
        let result = await exitTask.value
        // Stdin is no longer wanted once the process is gone.
        if !terminal { stdinReceiver?.reset() }
        let timer = Task { [channels] in
            try? await Task.sleep(for: Self.drainTimeout)
            if Task.isCancelled { return }
            for channel in channels.withLock({ $0 }) { channel.close(promise: nil) }
        }
        await pumps.value
        timer.cancel()
        return result
    }

    /// The exit, if the process has exited.
    public var exited: WaitStatusAndTime? { exitRecord.withLock { $0 } }

    public func signal(_ signal: Int32, all: Bool) throws(AgentError) {
        guard kill(all ? -pid : pid, signal) == 0 else { throw .errno("signal \(signal) to \(id)") }
    }

    public func resize(width: UInt16, height: UInt16) throws(AgentError) {
        guard let resizeFD else { throw .failedPrecondition("process \(id) has no terminal") }
        guard skiff_set_window_size(resizeFD, height, width) == 0 else { throw .errno("resize \(id)") }
    }

    /// Closes stdin: the process reads end of file.
    public func closeStdin() {
        stdinReceiver?.reset()
    }

    /// Releases what the record still holds.
    func release() {
        if let resizeFD { close(resizeFD) }
        stdinReceiver?.reset()
    }

    private static func register(_ channel: any Channel, in channels: Locked<[any Channel]>) {
        channels.withLock { $0.append(channel) }
    }

    private static func pumpOutput(fd: Int32, to sender: MuxSender?, group: any EventLoopGroup, channels: Locked<[any Channel]>) async {
        do {
            let channel = try await NIOPipeBootstrap(group: group).channelOption(.recvAllocator, value: Self.readSize).takingOwnershipOfDescriptor(input: fd) { channel in
                channel.eventLoop.makeCompletedFuture {
                    register(channel, in: channels)
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
            try await channel.executeThenClose { inbound, _ in
                for try await chunk in inbound {
                    if let sender { try await sender.send(chunk) }
                }
            }
        } catch {
            // The host reset the stream, the connection went away, or the read failed: stop.
        }
        try? await sender?.finish()
    }

    /// Copies the host's stdin stream into the process. Each chunk is awaited until it is in
    /// the pipe, not only queued: a reader that is slow to start (`sleep 2; wc -c`) must still
    /// get every byte, and closing the channel would drop whatever NIO still held.
    private static func pumpInput(fd: Int32, from receiver: MuxReceiver?, group: any EventLoopGroup, channels: Locked<[any Channel]>) async {
        do {
            let channel: any Channel = try await NIOPipeBootstrap(group: group).takingOwnershipOfDescriptor(output: fd) { channel in
                channel.eventLoop.makeCompletedFuture {
                    register(channel, in: channels)
                    return channel
                }
            }
            defer { channel.close(promise: nil) }
            if let receiver {
                for try await chunk in receiver { try await channel.writeAndFlush(chunk).get() }
            }
        } catch {
            receiver?.reset()
        }
    }

    private static func pumpTerminal(master: Int32, stdin: MuxReceiver?, stdout: MuxSender?, group: any EventLoopGroup, channels: Locked<[any Channel]>) async {
        do {
            let channel = try await NIOPipeBootstrap(group: group).channelOption(.recvAllocator, value: Self.readSize).takingOwnershipOfDescriptor(inputOutput: master) { channel in
                channel.eventLoop.makeCompletedFuture {
                    register(channel, in: channels)
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
            let raw = channel.channel
            try await channel.executeThenClose { inbound, _ in
                // As for a pipe: each chunk is in the terminal before the next is taken.
                let input = Task {
                    if let stdin {
                        for try await chunk in stdin { try await raw.writeAndFlush(chunk).get() }
                    }
                }
                defer { stdin?.reset(); input.cancel() }
                do {
                    for try await chunk in inbound {
                        if let stdout { try await stdout.send(chunk) }
                    }
                } catch {
                    // EIO: every holder of the terminal's slave side has closed it.
                }
            }
        } catch {
        }
        try? await stdout?.finish()
    }
}

