import FoundationEssentials
import Glibc
import Logging
import PodController
import ShimProcess
import ShimService
import TTRPC

// containerd-shim-skiff-v2: the shim containerd starts for runtime io.containerd.skiff.v2.
//   ... start   find or start the pod's shim; print its address
//   ... delete  clean up after a task whose shim is gone; print a DeleteResponse
//   (none)      serve the task service on descriptor 3 (given by `start`)

let version = "skiff 0.1"

/// Writes all of `bytes` to descriptor `fd` (stdout 1, stderr 2).
func emit(_ bytes: some Collection<UInt8>, to fd: Int32) {
    var rest = Array(bytes)[...]
    while !rest.isEmpty {
        let n = rest.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0, errno == EINTR { continue }
        guard n > 0 else { return }
        rest = rest.dropFirst(n)
    }
}

func fail(_ message: String) -> Never {
    emit("containerd-shim-skiff-v2: \(message)\n".utf8, to: 2)
    exit(1)
}

let arguments: ShimArguments
do {
    arguments = try ShimArguments(parsing: Array(CommandLine.arguments.dropFirst()))
} catch {
    fail("\(error)")
}
if arguments.version {
    print("containerd-shim-skiff-v2:\n  Version: \(version)")
    exit(0)
}

let bundle = TaskBundle(path: arguments.bundle.isEmpty ? FileManager.default.currentDirectoryPath : arguments.bundle)

switch arguments.action {
case .start:
    let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    do {
        let address = try ShimStart.run(arguments, bundle: bundle, executable: executable)
        emit(address.utf8, to: 1)
        exit(0)
    } catch {
        fail("start: \(error)")
    }

case .delete:
    let (response, failures) = await ShimDelete.run(arguments, bundle: bundle)
    for failure in failures { emit("delete: \(failure)\n".utf8, to: 2) }
    emit(response, to: 1)
    exit(0)

case .serve:
    // A reader that went away (a closed fifo, a dropped connection) is an error to handle,
    // not a reason to die.
    signal(SIGPIPE, SIG_IGN)
    // The listening socket must die with this process: no child may inherit it.
    _ = fcntl(3, F_SETFD, FD_CLOEXEC)
    // Logs go to the bundle's log fifo, which containerd reads.
    let logFD = open(bundle.logFifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
    if logFD >= 0 { dup2(logFD, 2) }
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = arguments.debug ? .debug : .info
        return handler
    }
    let logger = Logger(label: "skiff.shim")
    let ttrpcAddress = ProcessInfo.processInfo.environment["TTRPC_ADDRESS"] ?? arguments.address + ".ttrpc"
    let events = EventPublisher(address: ttrpcAddress, namespace: arguments.namespace, logger: logger)
    // Where each pod's VM state lives: SKIFF_STATE_ROOT from containerd's environment (a
    // private containerd keeps its pods under its own directory), else /run/skiff.
    let stateRoot = ProcessInfo.processInfo.environment["SKIFF_STATE_ROOT"] ?? "/run/skiff"
    guard stateRoot.hasPrefix("/") else { fail("serve: SKIFF_STATE_ROOT must be an absolute path, not \(stateRoot)") }
    let pod = PodController(events: events, logger: logger, scope: "\(arguments.address)/\(arguments.namespace)", stateRoot: stateRoot)
    // The socket `start` bound: removed when this shim leaves, as runc's shim does (a killed
    // shim's socket goes in `shim delete`).
    let socketPath = ShimSocket.boundPath(of: 3)
    let service = TaskService(pod: pod, logger: logger, onShutdown: {
        if let socketPath { unlink(socketPath) }
        Task {
            await events.flush()
            exit(0)
        }
    })
    do {
        let diag = DiagService(pod: pod, logger: logger)
        let listener = try await TTRPCServer(services: [service, diag], logger: logger).listen(boundSocket: 3, path: "")
        logger.info("serving \(arguments.id) in namespace \(arguments.namespace) on \(socketPath ?? "an unnamed socket")")
        try await listener.waitClosed()
    } catch {
        fail("serve: \(error)")
    }
}
