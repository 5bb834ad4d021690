import CSkiffSys
import FoundationEssentials
import Glibc
import NIOCore
import NIOPosix
import StdioMux
import SkiffSupport
import Synchronization

/// A process's stdio between containerd's fifos (or `file://` log paths) and the stdio
/// channel's streams. Output is written as it comes, and `finished` completes only after
/// every byte reached the fifo, so nothing written just before an exit is lost.
public struct FifoIO: Sendable {
    /// The stream ids on the stdio channel (nil: not connected).
    public let stdin: UInt32?
    public let stdout: UInt32?
    public let stderr: UInt32?
    /// Completes once every byte of output has reached containerd.
    public let finished: Task<Void, Never>
    private let receivers: [MuxReceiver]
    private let stdinClose: StdinClose

    /// The stdin pump: containerd's fifo, opened when the process starts, and CloseIO.
    /// CloseIO: once everything already written to the stdin fifo has been sent, the stream
    /// ends, and the process reads end of file after the last byte, not before it.
    final class StdinClose: Sendable {
        let requested = Atomic<Bool>(false)
        /// The process is gone (or never started): stop reading at once.
        let stopped = Atomic<Bool>(false)
        /// The fifo and the stream, until the pump starts.
        let pending: Mutex<(path: String, sender: MuxSender)?>
        /// Opened read-only: the last writer's close is the end.
        let endsAtEOF: Bool
        init(pending: (path: String, sender: MuxSender)?, endsAtEOF: Bool = false) {
            self.pending = Mutex(pending)
            self.endsAtEOF = endsAtEOF
        }
    }

    /// Opens the paths containerd gave and starts pumping. Empty paths stay unconnected.
    /// With `deferStdin`, the stdin fifo is opened only by `startStdin` (at Start): `ctr`
    /// begins copying its input as soon as the fifo has a reader, and asks for CloseIO at the
    /// input's end only once its Create has returned, so a reader opened at Create would see
    /// short input end before anyone can close it.
    /// With `stdinEndsAtEOF`, stdin ends when the fifo's last writer closes it (shimdiag's
    /// way); else only CloseIO or the process's end ends it (containerd's way: its writers
    /// come and go).
    static func start(stdin: String, stdout: String, stderr: String, terminal: Bool, deferStdin: Bool = false,
                      stdinEndsAtEOF: Bool = false, mux: StdioMux, nextStream: () -> UInt32) throws(SkiffError) -> FifoIO {
        let outFD = try open(output: stdout)
        let errFD = terminal ? nil : try open(output: stderr)
        let ids = (stdin.isEmpty ? nil : nextStream(), outFD.map { _ in nextStream() }, errFD.map { _ in nextStream() })
        let outReceiver = ids.1.map { mux.receiver(stream: $0) }
        let errReceiver = ids.2.map { mux.receiver(stream: $0) }
        let stdinClose = StdinClose(pending: ids.0.map { (stdin, mux.sender(stream: $0)) }, endsAtEOF: stdinEndsAtEOF)
        let finished = Task {
            await withTaskGroup(of: Void.self) { group in
                if let outFD, let outReceiver { group.addTask { await copy(outReceiver, to: outFD) } }
                if let errFD, let errReceiver { group.addTask { await copy(errReceiver, to: errFD) } }
            }
        }
        let io = FifoIO(stdin: ids.0, stdout: ids.1, stderr: ids.2, finished: finished,
                        receivers: [outReceiver, errReceiver].compactMap { $0 }, stdinClose: stdinClose)
        if !deferStdin {
            do { try io.startStdin() } catch {
                io.abandon()
                throw error
            }
        }
        return io
    }

    /// Opens the stdin fifo and starts copying it to the process (once; later calls do
    /// nothing). Stdin ends when CloseIO comes or the process ends; it is not awaited for
    /// the exit.
    func startStdin() throws(SkiffError) {
        guard let (path, sender) = stdinClose.pending.withLock({ pending in defer { pending = nil }; return pending }) else { return }
        guard let inFD = try Self.open(input: path, endsAtEOF: stdinClose.endsAtEOF) else { return }
        let close = stdinClose
        Task.detached { await Self.copy(from: inFD, to: sender, close: close) }
    }

    /// A process with no stdio at all (nothing to pump; `finished` at once).
    public static func unconnected() -> FifoIO {
        FifoIO(stdin: nil, stdout: nil, stderr: nil, finished: Task {}, receivers: [], stdinClose: StdinClose(pending: nil))
    }

    /// Ends the process's stdin after what the fifo holds now (CloseIO).
    func closeStdin() {
        stdinClose.requested.store(true, ordering: .sequentiallyConsistent)
    }

    /// The process has exited: nothing reads its stdin any more.
    func stopStdin() {
        stdinClose.stopped.store(true, ordering: .sequentiallyConsistent)
    }

    /// For a process that never started: ends the output pumps, which close their fifos,
    /// and the stdin pump.
    func abandon() {
        receivers.forEach { $0.reset() }
        stopStdin()
        // A stdin that never started: its stream ends.
        if let (_, sender) = stdinClose.pending.withLock({ pending in defer { pending = nil }; return pending }) {
            Task { try? await sender.finish(waitingForReceiver: false) }
        }
    }

    private static func open(output path: String) throws(SkiffError) -> Int32? {
        guard !path.isEmpty else { return nil }
        let file = path.hasPrefix("file://") ? String(path.dropFirst(7)) : path
        let flags = path.hasPrefix("file://") ? O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC : O_WRONLY | O_CLOEXEC
        let fd = Glibc.open(file, flags, 0o644)
        guard fd >= 0 else { throw .invalidArgument("open \(path): \(String(cString: strerror(errno)))") }
        return fd
    }

    private static func open(input path: String, endsAtEOF: Bool) throws(SkiffError) -> Int32? {
        guard !path.isEmpty else { return nil }
        // Read-write so opening does not wait for a writer; end of input is signalled by
        // CloseIO (or the task's end), as containerd does it. Non-blocking: the pump polls.
        // Read-only when the writers' close is the end (the writer opened it first).
        let fd = Glibc.open(path, (endsAtEOF ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw .invalidArgument("open \(path): \(String(cString: strerror(errno)))") }
        return fd
    }

    private static func copy(_ receiver: MuxReceiver, to fd: Int32) async {
        defer { close(fd) }
        do {
            for try await chunk in receiver {
                try chunk.withUnsafeReadableBytes { raw throws in
                    var offset = 0
                    while offset < raw.count {
                        let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                        if n < 0 {
                            if errno == EINTR { continue }
                            throw SkiffError.internalError("write: \(String(cString: strerror(errno)))")
                        }
                        offset += n
                    }
                }
            }
        } catch {
            receiver.reset()
        }
    }

    /// Containerd's stdin fifo, read on a thread of its own: fifos do not poll well in an
    /// event loop once writers come and go, and a read that waits must not hold one of the
    /// few threads Swift's tasks share (there, each waiting exec stalled every other task
    /// until the pool grew, about a second). Short polls let it notice CloseIO once the fifo
    /// is empty, and the end of the process.
    private static func copy(from fd: Int32, to sender: MuxSender, close: StdinClose) async {
        let (chunks, continuation) = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .bufferingOldest(4))
        let (ended, end) = AsyncStream<Never>.makeStream()
        let started = BlockingThread.start {
            _ = skiff_set_thread_name("skiff-stdin")
            defer {
                continuation.finish()
                end.finish()
            }
            var buffer = [UInt8](repeating: 0, count: 32 << 10)
            while !close.stopped.load(ordering: .sequentiallyConsistent) {
                var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&poller, 1, 50)
                if ready > 0 {
                    let n = read(fd, &buffer, buffer.count)
                    if n > 0 {
                        // Backpressure: wait while the sender is behind.
                        while case .dropped = continuation.yield(Array(buffer[0..<n])) {
                            if close.stopped.load(ordering: .sequentiallyConsistent) { return }
                            usleep(5_000)
                        }
                    } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                        return
                    }
                } else if ready == 0, close.requested.load(ordering: .sequentiallyConsistent) {
                    return  // asked to close, and nothing is left to read
                } else if ready < 0, errno != EINTR {
                    return
                }
            }
        }
        if !started {
            continuation.finish()
            end.finish()
        }
        for await bytes in chunks {
            do { try await sender.send(ByteBuffer(bytes: bytes)) } catch { break }
        }
        close.stopped.store(true, ordering: .sequentiallyConsistent)
        // The reader has ended (or ends within one poll); only then may the fd go.
        for await _ in ended {}
        Glibc.close(fd)
        try? await sender.finish()
    }
}
