import AgentAPI
import Glibc
import GuestAgent
import NIOCore
import NIOPosix
import StdioMux
import Testing
import TTRPC

/// The agent's service on this host, reached as the shim reaches it in a VM: ttrpc on one
/// connection, process stdio multiplexed on another.
private struct AgentHarness {
    let agent: Skiff_Agent_V1_AgentClient
    let mux: StdioMux
    private let guestMux: StdioMux
    /// crun's run directory for this harness, removed by `close`.
    private let runDirectory: String
    private static let counter = Locked(UInt32(0))

    static func start() async throws -> AgentHarness {
        let group = MultiThreadedEventLoopGroup.singleton
        let runDirectory = "/tmp/skiff-agent-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let service = AgentService(reaper: ExitReaper(mode: .ownChildren), crun: CrunRunner(runDirectory: runDirectory))
        let (hostControl, guestControl) = try await channelPair()
        try await TTRPCServer(services: [service]).serve(on: guestControl)
        let client = try await TTRPCClient.attach(to: hostControl)
        let (hostStdio, guestStdio) = try await channelPair()
        let guestMux = try await StdioMux.attach(to: guestStdio)
        service.attachStdio(guestMux)
        _ = group
        return AgentHarness(agent: Skiff_Agent_V1_AgentClient(client), mux: try await StdioMux.attach(to: hostStdio),
                            guestMux: guestMux, runDirectory: runDirectory)
    }

    static func channelPair() async throws -> (any Channel, any Channel) {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else { throw AgentError.errnoForTests("socketpair") }
        let group = MultiThreadedEventLoopGroup.singleton
        return (try await NIOPipeBootstrap(group: group).takingOwnershipOfDescriptor(inputOutput: fds[0]).get(),
                try await NIOPipeBootstrap(group: group).takingOwnershipOfDescriptor(inputOutput: fds[1]).get())
    }

    func close() async {
        await agent.client.close()
        await mux.close()
        await guestMux.close()
        // Empty once every container of the harness is deleted.
        rmdir(runDirectory)
    }

    /// Fresh stream ids, odd for this side's choosing.
    func streams() -> (stdin: UInt32, stdout: UInt32, stderr: UInt32) {
        let base = Self.counter.withLock { value -> UInt32 in value += 3; return value }
        return (base, base + 1, base + 2)
    }

    /// Runs `args` and returns its exit status, stdout and stderr.
    func run(_ args: [String], id: String, stdin: [UInt8]? = nil, terminal: Bool = false,
             width: UInt32 = 0, height: UInt32 = 0) async throws -> (status: UInt32, stdout: [UInt8], stderr: [UInt8]) {
        let ids = streams()
        let out = mux.receiver(stream: ids.stdout)
        let err = terminal ? nil : mux.receiver(stream: ids.stderr)
        _ = try await agent.createProcess(.with {
            $0.id = id
            $0.args = args
            $0.terminal = terminal
            $0.width = width
            $0.height = height
            $0.stdoutStream = ids.stdout
            if !terminal { $0.stderrStream = ids.stderr }
            if stdin != nil { $0.stdinStream = ids.stdin }
        })
        if let stdin {
            let sender = mux.sender(stream: ids.stdin)
            try await sender.send(ByteBuffer(bytes: stdin))
            try await sender.finish()
        }
        async let stdout = collect(out)
        async let stderr = collect(err)
        let exit = try await agent.waitProcess(.with { $0.id = id })
        let result = (exit.exitStatus, try await stdout, try await stderr)
        _ = try await agent.deleteProcess(.with { $0.id = id })
        return result
    }
}

private func collect(_ receiver: MuxReceiver?) async throws -> [UInt8] {
    guard let receiver else { return [] }
    var bytes: [UInt8] = []
    for try await chunk in receiver { bytes += chunk.readableBytesView }
    return bytes
}

private func withAgent(_ body: (AgentHarness) async throws -> Void) async throws {
    let harness = try await AgentHarness.start()
    do { try await body(harness) } catch { await harness.close(); throw error }
    await harness.close()
}

private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

@Suite(.timeLimit(.minutes(2))) struct AgentServiceTests {
    @Test func pingAnswersWithTheAgentVersion() async throws {
        try await withAgent { h async throws in
            #expect(try await h.agent.ping(.init()).version.hasPrefix("skiff-agent"))
        }
    }

    @Test func guestInfoReportsTheKernelAndMemory() async throws {
        try await withAgent { h async throws in
            let info = try await h.agent.guestInfo(.init())
            var names = utsname()
            uname(&names)
            let release = withUnsafeBytes(of: &names.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            #expect(info.kernelRelease == release)
            #expect(info.cpus >= 1)
            #expect(info.memoryTotalBytes > info.memoryAvailableBytes)
        }
    }

    @Test func processOutputAndExitCodeReachTheHost() async throws {
        try await withAgent { h async throws in
            let result = try await h.run(["sh", "-c", "echo out; echo err >&2; exit 3"], id: "p1")
            #expect(result.status == 3)
            #expect(text(result.stdout) == "out\n")
            #expect(text(result.stderr) == "err\n")
        }
    }

    @Test func stdinIsDeliveredAndItsEndIsSeen() async throws {
        try await withAgent { h async throws in
            let input = Array("line one\nline two\n".utf8)
            let result = try await h.run(["cat"], id: "cat", stdin: input)
            #expect(result.status == 0)
            #expect(result.stdout == input)
        }
    }

    @Test func stdinReachesAReaderThatStartsLate() async throws {
        try await withAgent { h async throws in
            // The pipe holds 64 KiB; the rest waits in the agent until the reader wakes up,
            // and none of it may be dropped when the host's stream ends first.
            let input = [UInt8](repeating: 0x61, count: 1 << 20)
            let result = try await h.run(["sh", "-c", "sleep 1; wc -c"], id: "late-reader", stdin: input)
            #expect(result.status == 0)
            #expect(text(result.stdout).filter { !$0.isWhitespace } == "1048576")
        }
    }

    @Test func crunRefusingAContainerAnswersWithCrunsOwnMessage() async throws {
        try await withAgent { h async throws in
            do {
                _ = try await h.agent.createContainer(.with {
                    $0.containerID = "refused"
                    $0.processID = "refused"
                    $0.bundle = "/no/such/bundle"
                    $0.config = "config.json"
                })
                Issue.record("crun create of a missing bundle succeeded")
            } catch let status as TTRPCStatus {
                #expect(status.code == .failedPrecondition)
                #expect(status.message.contains("crun create refused"), "\(status.message)")
            }
            // Nothing was entered: the same id is free for a good call.
            await expectStatus(.notFound) { _ = try await h.agent.waitProcess(.with { $0.id = "refused" }) }
        }
    }

    @Test func containerCallsCheckTheirIdsAndUnknownContainersAreNotFound() async throws {
        try await withAgent { h async throws in
            for bad in ["-help", "a b", "$(touch x)", "../x", "", ".hidden"] {
                await expectStatus(.invalidArgument) {
                    _ = try await h.agent.createContainer(.with { $0.containerID = bad; $0.processID = "p"; $0.bundle = "/b"; $0.config = "c" })
                }
            }
            await expectStatus(.invalidArgument) {
                _ = try await h.agent.createContainer(.with { $0.containerID = "c"; $0.processID = "p"; $0.bundle = "relative"; $0.config = "c" })
            }
            await expectStatus(.notFound) { _ = try await h.agent.startContainer(.with { $0.containerID = "unknown" }) }
            await expectStatus(.notFound) { _ = try await h.agent.signalContainer(.with { $0.containerID = "unknown"; $0.signal = 9 }) }
            await expectStatus(.invalidArgument) { _ = try await h.agent.signalContainer(.with { $0.containerID = "unknown"; $0.signal = 99 }) }
            await expectStatus(.notFound) { _ = try await h.agent.pauseContainer(.with { $0.containerID = "unknown" }) }
            await expectStatus(.notFound) { _ = try await h.agent.containerStats(.with { $0.containerID = "unknown" }) }
            await expectStatus(.notFound) { _ = try await h.agent.containerPids(.with { $0.containerID = "unknown" }) }
            await expectStatus(.notFound) {
                _ = try await h.agent.execProcess(.with { $0.containerID = "unknown"; $0.processID = "e"; $0.processSpec = "/p.json" })
            }
            // Deleting what is not there is done already.
            _ = try await h.agent.deleteContainer(.with { $0.containerID = "unknown" })
            #expect(try await h.agent.ping(.init()).version.isEmpty == false)
        }
    }

    @Test func outputWrittenJustBeforeExitIsNeverLost() async throws {
        try await withAgent { h async throws in
            for i in 0..<20 {
                let result = try await h.run(["sh", "-c", "printf 'last words %s' \(i)"], id: "quick\(i)")
                #expect(text(result.stdout) == "last words \(i)")
            }
        }
    }

    @Test func fiftyMegabytesOfStdoutArriveIntact() async throws {
        try await withAgent { h async throws in
            let result = try await h.run(["head", "-c", "52428800", "/dev/zero"], id: "big")
            #expect(result.status == 0)
            #expect(result.stdout.count == 52_428_800)
            #expect(result.stdout.allSatisfy { $0 == 0 })
        }
    }

    @Test func aTerminalProcessSeesItsTTYAndSize() async throws {
        try await withAgent { h async throws in
            let result = try await h.run(["sh", "-c", "tty; stty size"], id: "tty", terminal: true, width: 120, height: 40)
            #expect(result.status == 0)
            let lines = text(result.stdout).split(separator: "\r\n").map(String.init)
            #expect(lines.first?.hasPrefix("/dev/pts/") == true)
            #expect(lines.dropFirst().first == "40 120")
        }
    }

    @Test func resizeChangesTheTerminalSize() async throws {
        try await withAgent { h async throws in
            let ids = h.streams()
            let out = h.mux.receiver(stream: ids.stdout)
            _ = try await h.agent.createProcess(.with {
                $0.id = "resize"; $0.args = ["sh", "-c", "read x; stty size"]; $0.terminal = true
                $0.stdinStream = ids.stdin; $0.stdoutStream = ids.stdout; $0.width = 80; $0.height = 24
            })
            _ = try await h.agent.resizeProcess(.with { $0.id = "resize"; $0.width = 100; $0.height = 30 })
            try await h.mux.sender(stream: ids.stdin).send(ByteBuffer(string: "go\n"))
            async let output = collect(out)
            let exit = try await h.agent.waitProcess(.with { $0.id = "resize" })
            #expect(exit.exitStatus == 0)
            let printed = text(try await output)
            #expect(printed.contains("30 100"))
        }
    }

    @Test func signalsKillAndTheStatusSaysWhich() async throws {
        try await withAgent { h async throws in
            _ = try await h.agent.createProcess(.with { $0.id = "sleeper"; $0.args = ["sleep", "60"] })
            _ = try await h.agent.signalProcess(.with { $0.id = "sleeper"; $0.signal = 9 })
            let exit = try await h.agent.waitProcess(.with { $0.id = "sleeper" })
            #expect(exit.exitStatus == 137)
            #expect(exit.signal == 9)
            #expect(exit.exitedAtNs > 0)
        }
    }

    @Test func signalAllReachesTheWholeProcessGroup() async throws {
        try await withAgent { h async throws in
            let ids = h.streams()
            let out = h.mux.receiver(stream: ids.stdout)
            _ = try await h.agent.createProcess(.with {
                $0.id = "group"; $0.args = ["sh", "-c", "trap '' TERM; sleep 60 & echo $!; wait"]; $0.stdoutStream = ids.stdout
            })
            var iterator = out.makeAsyncIterator()
            let first = try await iterator.next()
            let childPID = Int32(text(Array(first?.readableBytesView ?? ByteBuffer().readableBytesView)).trimmingCharacters()) ?? 0
            #expect(childPID > 0)
            _ = try await h.agent.signalProcess(.with { $0.id = "group"; $0.signal = 9; $0.all = true })
            _ = try await h.agent.waitProcess(.with { $0.id = "group" })
            // Gone, or a zombie waiting for this host's init to reap it.
            var dead = false
            for _ in 0..<100 where !dead {
                dead = kill(childPID, 0) != 0 || processState(childPID) == "Z"
                if !dead { try await Task.sleep(for: .milliseconds(10)) }
            }
            #expect(dead)
        }
    }

    @Test func badRequestsGetTheRightCodesAndTheAgentStaysUp() async throws {
        try await withAgent { h async throws in
            await expectStatus(.notFound) { _ = try await h.agent.createProcess(.with { $0.id = "x"; $0.args = ["no-such-program"] }) }
            await expectStatus(.invalidArgument) { _ = try await h.agent.createProcess(.with { $0.id = "x" }) }
            await expectStatus(.invalidArgument) { _ = try await h.agent.createProcess(.with { $0.id = "x"; $0.args = ["true"]; $0.cwd = "/no/such/dir" }) }
            await expectStatus(.notFound) { _ = try await h.agent.waitProcess(.with { $0.id = "missing" }) }
            _ = try await h.agent.createProcess(.with { $0.id = "dup"; $0.args = ["sleep", "30"] })
            await expectStatus(.alreadyExists) { _ = try await h.agent.createProcess(.with { $0.id = "dup"; $0.args = ["true"] }) }
            await expectStatus(.failedPrecondition) { _ = try await h.agent.deleteProcess(.with { $0.id = "dup" }) }
            await expectStatus(.failedPrecondition) { _ = try await h.agent.resizeProcess(.with { $0.id = "dup"; $0.width = 1; $0.height = 1 }) }
            _ = try await h.agent.signalProcess(.with { $0.id = "dup"; $0.signal = 9 })
            _ = try await h.agent.waitProcess(.with { $0.id = "dup" })
            _ = try await h.agent.deleteProcess(.with { $0.id = "dup" })
            #expect(try await h.agent.ping(.init()).version.isEmpty == false)
        }
    }

    @Test func dumpStacksListsProcessesAndThreads() async throws {
        try await withAgent { h async throws in
            _ = try await h.agent.createProcess(.with { $0.id = "visible"; $0.args = ["sleep", "30"] })
            let dump = try await h.agent.dumpStacks(.init()).stacks
            #expect(dump.contains("visible"))
            #expect(dump.contains("thread "))
            _ = try await h.agent.signalProcess(.with { $0.id = "visible"; $0.signal = 9 })
            _ = try await h.agent.waitProcess(.with { $0.id = "visible" })
        }
    }
}

private func expectStatus(_ code: TTRPCStatus.Code, _ body: () async throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) async {
    do {
        try await body()
        Issue.record("expected \(code), got success", sourceLocation: sourceLocation)
    } catch let status as TTRPCStatus {
        #expect(status.code == code, "\(status)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected \(code), got \(error)", sourceLocation: sourceLocation)
    }
}

/// The state letter of /proc/PID/stat.
private func processState(_ pid: Int32) -> String? {
    let fd = open("/proc/\(pid)/stat", O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 512)
    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard n > 0 else { return nil }
    let stat = text(Array(buffer[0..<n]))
    guard let close = stat.lastIndex(of: ")") else { return nil }
    return stat[stat.index(after: close)...].split(separator: " ").first.map(String.init)
}

extension String {
    func trimmingCharacters() -> String { String(filter { !$0.isWhitespace }) }
}

extension AgentError {
    static func errnoForTests(_ what: String) -> AgentError { .system(what, Glibc.errno) }
}
