import ArgumentParser
import CSkiffSys
import Foundation
import Glibc
import ShimProcess
import SkiffAPI
import TTRPC

// shimdiag: diagnostics of a running Skiff shim, through the diag service on the shim's own
// socket. A pod's shim is found as containerd finds it: from containerd's address, the
// namespace and the pod's id (the sandbox id, or the container's id for a pod of one).

/// Where the shim listens, and a connection to it.
struct ShimTarget: ParsableArguments {
    @Option(help: "containerd's socket, from which the shim's is derived.")
    var address = "/run/containerd/containerd.sock"

    @Option(help: "containerd namespace of the task.")
    var namespace = "default"

    @Option(help: "The shim's socket, instead of deriving it.")
    var socket: String?

    @Argument(help: "The pod's id: its sandbox id, or the container's id for a pod of one container.")
    var id: String

    var socketPath: String {
        socket ?? ShimSocket.path(containerdAddress: address, namespace: namespace, group: id)
    }

    func withDiag<T>(_ body: (Skiff_Diag_V1_ShimDiagClient) async throws -> T) async throws -> T {
        let client: TTRPCClient
        do {
            client = try await TTRPCClient.connect(unixSocket: socketPath)
        } catch {
            throw DiagFailure(description: "no shim answers at \(socketPath) (for \(id) in \(namespace) of \(address)): \(error)")
        }
        do {
            let result = try await body(Skiff_Diag_V1_ShimDiagClient(client))
            await client.close()
            return result
        } catch {
            await client.close()
            throw error
        }
    }
}

/// A failure to report as it is, without the usage text.
struct DiagFailure: Error, CustomStringConvertible {
    let description: String
}

@main
struct ShimDiag: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shimdiag",
        abstract: "Diagnostics of a running Skiff shim and its VM.",
        subcommands: [Exec.self, Stacks.self, Tasks.self, Share.self, Pid.self, Devices.self])
}

/// A command in the VM itself, outside every container; its output comes back, and shimdiag
/// exits with its exit code.
struct Exec: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a command in the pod's VM (outside the containers).")
    @OptionGroup var target: ShimTarget
    @Option(help: "Working directory in the VM.")
    var workdir = "/"
    @Flag(name: [.customShort("i"), .long], help: "Send this program's stdin to the command, until it ends.")
    var interactive = false
    @Flag(name: [.customShort("t"), .long], help: "Run the command on a terminal of this terminal's size (raw mode here meanwhile).")
    var tty = false
    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments.")
    var command: [String] = []

    func run() async throws {
        let args = command.first == "--" ? Array(command.dropFirst()) : command
        guard !args.isEmpty else { throw ValidationError("exec needs a command") }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shimdiag-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = dir + "/stdout", err = dir + "/stderr", input = dir + "/stdin"
        guard mkfifo(out, 0o600) == 0, tty || mkfifo(err, 0o600) == 0, !interactive || mkfifo(input, 0o600) == 0 else {
            throw ValidationError("mkfifo in \(dir): \(String(cString: strerror(errno)))")
        }
        // Stdin: the writer opens once the shim has opened the reader (a blocking open waits
        // for it), so what it writes cannot be lost in a fifo nobody has open, and its close is
        // the end the shim sees (fifo(7): a reader sees no hang-up before a writer came).
        if interactive {
            Thread {
                let writer = open(input, O_WRONLY | O_CLOEXEC)
                guard writer >= 0 else { return }
                copyAll(from: 0, to: writer)
                close(writer)
            }.start()
        }
        var size: (rows: UInt16, cols: UInt16) = (0, 0)
        var saved = termios()
        let raw = tty && isatty(0) == 1 && tcgetattr(0, &saved) == 0
        if tty { _ = skiff_get_window_size(isatty(0) == 1 ? 0 : 1, &size.rows, &size.cols) }
        if raw {
            var rawMode = saved
            cfmakeraw(&rawMode)
            tcsetattr(0, TCSANOW, &rawMode)
        }
        defer { if raw { tcsetattr(0, TCSANOW, &saved) } }
        // Each output fifo is copied by a thread of its own; opening waits for the shim's side.
        let copiers = (tty ? [(out, Int32(1))] : [(out, Int32(1)), (err, Int32(2))]).map { path, target in
            let thread = Thread {
                let fd = open(path, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { return }
                defer { close(fd) }
                copyAll(from: fd, to: target)
            }
            thread.start()
            return thread
        }
        let code = try await target.withDiag { diag in
            try await diag.execInHost(.with {
                $0.args = args
                $0.workdir = workdir
                $0.stdout = out
                if !tty { $0.stderr = err }
                if interactive { $0.stdin = input }
                $0.terminal = tty
                $0.width = UInt32(size.cols)
                $0.height = UInt32(size.rows)
            }).exitCode
        }
        while copiers.contains(where: { !$0.isFinished }) { try await Task.sleep(for: .milliseconds(5)) }
        throw ExitCode(code)
    }
}

/// Copies `source` to `target` until the end of `source` or a failed write.
func copyAll(from source: Int32, to target: Int32) {
    var buffer = [UInt8](repeating: 0, count: 64 << 10)
    while true {
        let n = read(source, &buffer, buffer.count)
        if n < 0, errno == EINTR { continue }
        if n <= 0 { return }
        var offset = 0
        while offset < n {
            let w = buffer.withUnsafeBytes { write(target, $0.baseAddress! + offset, n - offset) }
            if w <= 0 { return }
            offset += w
        }
    }
}

struct Stacks: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The shim's threads and the guest agent's.")
    @OptionGroup var target: ShimTarget

    func run() async throws {
        let stacks = try await target.withDiag { try await $0.stacks(.init()) }
        print("== shim ==\n\(stacks.stacks)== guest agent ==\n\(stacks.guestStacks)", terminator: "")
    }
}

struct Devices: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The PCI devices assigned to the pod's VM.")
    @OptionGroup var target: ShimTarget

    func run() async throws {
        let devices = try await target.withDiag { try await $0.devices(.init()) }.devices
        for device in devices {
            let guest = device.guestAddress.isEmpty ? "" : " guest \(device.guestAddress) (\(device.guestDriver))"
            print("\(device.identity) \(device.driver) \(device.state) references \(device.references)\(guest)")
        }
    }
}

struct Tasks: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The pod's tasks, and with --execs their execs.")
    @OptionGroup var target: ShimTarget
    @Flag(help: "List each task's execs too.")
    var execs = false

    func run() async throws {
        let tasks = try await target.withDiag { diag in try await diag.tasks(.with { $0.execs = execs }) }
        for task in tasks.tasks {
            print(task.id)
            for exec in task.execs { print("  exec \(exec.id) \(exec.state)") }
        }
    }
}

struct Share: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Share a host path into the VM at a path there, until the VM ends.")
    @OptionGroup var target: ShimTarget
    @Argument(help: "The host path.")
    var hostPath: String
    @Argument(help: "Where it appears in the VM.")
    var vmPath: String
    @Flag(help: "Read-only in the VM.")
    var readOnly = false

    func run() async throws {
        _ = try await target.withDiag { diag in
            try await diag.share(.with { $0.hostPath = hostPath; $0.uvmPath = vmPath; $0.readOnly = readOnly })
        }
    }
}

struct Pid: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The shim's process id.")
    @OptionGroup var target: ShimTarget

    func run() async throws {
        print(try await target.withDiag { try await $0.pid(.init()) }.pid)
    }
}
