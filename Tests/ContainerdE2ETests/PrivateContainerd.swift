import ContainerdAPI
import Foundation
import Glibc
import SwiftProtobuf
import Testing
import TTRPC
import VMManager

/// Every end-to-end suite, one at a time (the machine has two cores). Each counts only what
/// its own private containerd made (SkiffCensus), so Skiff pods running elsewhere on the
/// machine do not disturb it.
@Suite(.serialized) struct ContainerdE2E {}

/// A private containerd (own root, state, socket, config) with Skiff's shim on its PATH and
/// the tests' own image imported; stopped, and checked for leftovers, at the end.
final class PrivateContainerd: @unchecked Sendable {
    let dir: String
    let socket: String
    let scripts: String
    /// Where the shim and shimdiag were built.
    let bin: String

    /// `environment`: variables (`NAME=value`) for containerd, which passes them to its shims.
    init(environment: [String] = []) throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        scripts = root + "/scripts"
        dir = "/tmp/skiff-cd-\(UUID().uuidString.prefix(8))"
        // The shim is built next to this test bundle.
        let binDirectory = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")).deletingLastPathComponent().path
        bin = binDirectory
        socket = try Self.shell("\(environment.joined(separator: " ")) \(scripts)/containerd-private start \(dir) \(binDirectory)").trimmingCharacters(in: .whitespacesAndNewlines)
        _ = try Self.shell("\(scripts)/make-test-image \(dir)/image.tar && ctr --address \(socket) image import \(dir)/image.tar")
    }

    /// The last lines of containerd's log (its shims' log lines among them), for a failure's message.
    func logTail(lines: Int = 40) -> String {
        let text = (try? String(contentsOfFile: dir + "/containerd.log", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    /// Stops containerd and starts it again over the same root and state; its shims, and
    /// the tasks they serve, stay.
    func restart() throws {
        _ = try Self.shell("\(scripts)/containerd-private restart \(dir) \(bin)")
    }

    func stop() {
        _ = try? Self.shell("\(scripts)/containerd-private stop \(dir)")
    }

    /// Runs `ctr` against this containerd; returns its exit status and combined output.
    func ctr(_ arguments: String) async throws -> (status: Int32, output: String) {
        let log = dir + "/ctr-\(UUID().uuidString.prefix(6)).out"
        defer { unlink(log) }
        let status = await Self.system("timeout -k 5 120 ctr --address \(socket) \(arguments) >\(log) 2>&1 </dev/null")
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return ((status >> 8) & 0xff, output)
    }

    /// Runs `shimdiag SUBCOMMAND --address (this containerd's) REST`; exit status and combined output.
    func shimdiag(_ subcommand: String, _ rest: String) async -> (status: Int32, output: String) {
        let log = dir + "/shimdiag-\(UUID().uuidString.prefix(6)).out"
        defer { unlink(log) }
        let status = await Self.system("timeout 120 \(bin)/shimdiag \(subcommand) --address \(socket) \(rest) >\(log) 2>&1 </dev/null")
        return ((status >> 8) & 0xff, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    /// Runs a shell command line in which `CTR` stands for `ctr` against this containerd
    /// (for pipes into ctr, or ctr under `script` for a terminal); returns status and output.
    func shellWithCtr(_ command: String) async -> (status: Int32, output: String) {
        let log = dir + "/sh-\(UUID().uuidString.prefix(6)).out"
        defer { unlink(log) }
        let line = command.replacingOccurrences(of: "CTR", with: "ctr --address \(socket)")
        let status = await Self.system("timeout 180 sh -c \(shellQuoted(line)) >\(log) 2>&1 </dev/null")
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return ((status >> 8) & 0xff, output)
    }

    /// system(3) on a thread of its own: a test waiting seconds for `ctr` must not hold one of
    /// the few threads every test in the process shares.
    static func system(_ line: String) async -> Int32 {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: Glibc.system(line)) }
        }
    }

    /// `text` as one single-quoted shell word.
    private func shellQuoted(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    static func shell(_ command: String) throws -> String {
        let log = "/tmp/skiff-sh-\(UUID().uuidString.prefix(8))"
        defer { unlink(log) }
        let status = Glibc.system("(\(command)) >\(log) 2>&1")
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        guard status == 0 else { throw ShellError(command: command, output: output) }
        return output
    }

    struct ShellError: Error, CustomStringConvertible {
        var command: String
        var output: String
        var description: String { "\(command) failed: \(output)" }
    }
}

/// How many threads called `name` the Skiff shims serving the containerd whose files are under
/// `dir` have; nil when no such shim runs.
func shimThreads(of dir: String, named name: String) -> Int? {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    var count: Int?
    for pid in entries.compactMap(Int32.init) {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { continue }
        let args = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard args.first?.hasSuffix("containerd-shim-skiff-v2") == true, args.contains(where: { $0.contains(dir) }) else { continue }
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        count = (count ?? 0) + tasks.filter { task in
            let comm = FileManager.default.contents(atPath: "/proc/\(pid)/task/\(task)/comm")
            return comm.map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) } == name
        }.count
    }
    return count
}

/// Runs `body` against a private containerd, stops it, and checks that nothing is left: no
/// shim, QEMU, mount or VM state.
func withContainerd(environment: [String] = [], _ body: (PrivateContainerd) async throws -> Void) async throws {
    _ = try GuestImage.locate()
    let containerd = try PrivateContainerd(environment: environment)
    do {
        try await body(containerd)
    } catch {
        containerd.stop()
        throw error
    }
    // Before containerd stops (its stop removes its directory): nothing of Skiff's is left
    // under it, each VM having gone with its last container.
    try await expectNoLeftovers(of: containerd.dir)
    containerd.stop()
    #expect(!FileManager.default.fileExists(atPath: containerd.dir), "the private containerd's directory is left")
}

/// After its shim was killed: waits (10 s at most) until `ctr task ls` no longer shows the task
/// RUNNING, which containerd does once it sees the shim gone; its own cleanup (`shim delete`)
/// may still be under way.
func waitForDeadShim(_ cd: PrivateContainerd) async throws {
    for _ in 0..<200 {
        if !(try await cd.ctr("task ls").output.contains("RUNNING")) { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    Issue.record("a task still shows RUNNING: \(try await cd.ctr("task ls").output)")
}

/// Ends a running task as a user would (SIGKILL, wait for STOPPED), then deletes it and its
/// container, expecting each step to work.
func killAndDelete(_ cd: PrivateContainerd, _ id: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    #expect(try await cd.ctr("task kill -s SIGKILL \(id)").status == 0, sourceLocation: sourceLocation)
    try await waitUntil(cd, task: id, shows: "STOPPED")
    #expect(try await cd.ctr("task delete \(id)").status == 0, sourceLocation: sourceLocation)
    #expect(try await cd.ctr("container delete \(id)").status == 0, sourceLocation: sourceLocation)
}

/// Waits until `ctr task ls` shows `status` for task `id` (10 s at most).
func waitUntil(_ cd: PrivateContainerd, task id: String, shows status: String) async throws {
    for _ in 0..<200 {
        let line = try await cd.ctr("task ls").output.split(separator: "\n").first { $0.hasPrefix(id + " ") }
        if line?.contains(status) == true { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    Issue.record("task \(id) never showed \(status)")
}
