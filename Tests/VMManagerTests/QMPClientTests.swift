import Foundation
import Testing
@testable import VMManager

/// QMP against a real QEMU with no machine: commands, errors, events, disconnection.
@Suite(.timeLimit(.minutes(1))) struct QMPClientTests {
    /// Starts `qemu-system-x86_64 -machine none` with QMP on a socket in a fresh directory,
    /// and kills it (and removes the directory) however the body ends.
    private func withBareQEMU(_ body: (QMPClient, ChildProcess) async throws -> Void) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("skiff-qmp-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let socket = dir.appendingPathComponent("qmp.sock").path
        let qemu = try ChildProcess.spawn("/usr/bin/qemu-system-x86_64", arguments: [
            "-machine", "none", "-nodefaults", "-display", "none",
            "-chardev", "socket,id=qmp,path=\(socket),server=on,wait=off", "-mon", "chardev=qmp,mode=control",
        ], outputLog: dir.appendingPathComponent("qemu.log").path)
        do {
            var client: QMPClient?
            for _ in 0..<400 where client == nil && qemu.exitStatus == nil {
                client = try? await QMPClient.connect(unixSocket: socket)
                if client == nil { try await Task.sleep(for: .milliseconds(10)) }
            }
            let qmp = try #require(client)
            try await body(qmp, qemu)
            await qmp.close()
        } catch {
            qemu.signal(SIGKILL)
            _ = await qemu.wait()
            throw error
        }
        qemu.signal(SIGKILL)
        _ = await qemu.wait()
    }

    @Test func commandReturnsQEMUsAnswer() async throws {
        try await withBareQEMU { qmp, _ in
            let status = try await qmp.execute("query-status")
            #expect(status["status"]?.stringValue != nil)
            let version = try await qmp.execute("query-version")
            #expect(version["qemu"]?["major"]?.intValue == 7)
        }
    }

    @Test func refusedCommandThrowsQEMUsErrorClassAndDescription() async throws {
        try await withBareQEMU { qmp, _ in
            do {
                try await qmp.execute("no-such-command")
                Issue.record("unknown command succeeded")
            } catch let VMManagerError.qmp(errorClass, description) {
                #expect(errorClass == "CommandNotFound")
                #expect(description.contains("no-such-command"))
            }
            // The connection is still good.
            _ = try await qmp.execute("query-status")
        }
    }

    @Test func concurrentCommandsEachGetTheirOwnAnswer() async throws {
        try await withBareQEMU { qmp, _ in
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for i in 0..<20 {
                    group.addTask { (try await qmp.execute(i % 2 == 0 ? "query-version" : "query-status"))[i % 2 == 0 ? "qemu" : "status"] != nil }
                }
                for try await ok in group { #expect(ok) }
            }
        }
    }

    @Test func eventsArriveOnTheEventStream() async throws {
        try await withBareQEMU { qmp, _ in
            try await qmp.execute("stop")
            var iterator = qmp.events.makeAsyncIterator()
            let event = await iterator.next()
            #expect(event?.name == "STOP")
        }
    }

    @Test func qemuExitingFailsCommandsDisconnectedAndEndsTheEventStream() async throws {
        try await withBareQEMU { qmp, qemu in
            try? await qmp.execute("quit")
            for await _ in qmp.events {}
            await #expect(throws: VMManagerError.self) { try await qmp.execute("query-status") }
            #expect(await qemu.wait() == .exited(0))
        }
    }
}
