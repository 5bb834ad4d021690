import CSkiffSys
import Glibc
import GuestAgent
import NIOCore
import NIOPosix
import StdioMux
import Synchronization
import TTRPC

// skiff-agent: PID 1 of the utility VM. Mounts the basic filesystems, loads the channel's
// modules, serves the agent API on the `skiff.agent` port and process stdio on the
// `skiff.stdio` port, and loads the remaining modules meanwhile.
//
// For tests on a host: `skiff-agent --control PATH --stdio PATH` serves on two existing
// device or socket paths (opened read-write), without the PID 1 setup.

let arguments = Array(CommandLine.arguments.dropFirst())
func option(_ name: String) -> String? {
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}
if arguments.contains("--version") {
    print(AgentService.version)
    exit(0)
}

let isInit = getpid() == 1
/// Opens once the host has heard the hello: a plain thread waits on it without the
/// concurrency runtime (a pipe that gets a byte).
final class ThreadGate: Sendable {
    private let fds: (read: Int32, write: Int32)
    init() {
        var pair: [Int32] = [-1, -1]
        _ = skiff_pipe_cloexec(&pair)
        fds = (pair[0], pair[1])
    }
    func open() {
        var byte: UInt8 = 1
        _ = write(fds.write, &byte, 1)
    }
    /// Returns once open, or after `timeoutMs`.
    func wait(timeoutMs: Int32) {
        var poller = pollfd(fd: fds.read, events: Int16(POLLIN), revents: 0)
        while poll(&poller, 1, timeoutMs) < 0, errno == EINTR {}
    }
}
let helloSent = ThreadGate()

let reaper = ExitReaper(mode: isInit ? .allChildren : .ownChildren)
// On-demand module groups load on a thread of their own (finit_module blocks).
let loadModules: @Sendable ([String]) async -> Void = { group in
    guard isInit else { return }
    await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
        startThread {
            var loader = ModuleLoader()
            var loaded: [String] = []
            for module in group {
                let result = loader.load(module)
                loaded += result.loaded
                result.failures.forEach { log("module \($0)") }
            }
            log("modules loaded on demand: \(loaded.joined(separator: " "))")
            done.resume()
        }
    }
}
// A driver an assigned PCI device is bound to (driver_override) loads when first asked for.
let pci = PCIDevices(loadModule: { name in
    guard isInit else { return }
    var loader = ModuleLoader()
    loader.load(name).failures.forEach { log("module \($0)") }
})
let service = AgentService(reaper: reaper, modulesPending: isInit, pci: pci, loadModules: loadModules)

if isInit {
    log("started")
    GuestInit.mountFilesystems()
    var loader = ModuleLoader()
    var loaded: [String] = []
    for module in ModuleLoader.channelModules {
        let result = loader.load(module)
        loaded += result.loaded
        result.failures.forEach { log("module \($0)") }
    }
    service.modules.withLock { $0 = loaded }
    log("channel modules loaded: \(loaded.joined(separator: " "))")
    let rest = loader
    if GuestFacts.kernelArguments().contains(ModuleLoader.templateArgument) {
        // A template's guest: every group now, before the ports open, so that its copies,
        // which start from the moment the ports opened, find everything loaded.
        GuestInit.sealExecutable("/usr/bin/crun")
        var loader = rest
        for group in ModuleLoader.templateGroups {
            load(group, with: &loader)
            service.markModulesLoaded(group)
        }
        service.markShareModulesLoaded()
        service.markModulesLoaded()
        log("template: all modules loaded")
    } else {
        loadRestInBackground(rest)
    }
}

/// Loads `modules` in order, records what loaded in the service's list and logs each failure.
func load(_ modules: [String], with loader: inout ModuleLoader) {
    for module in modules {
        let result = loader.load(module)
        service.modules.withLock { $0 += result.loaded }
        result.failures.forEach { log("module \($0)") }
    }
}

/// The modules a plain boot loads while the agent serves, on a thread of their own: each
/// finit_module blocks for a while under emulation, and must not hold up the concurrency pool.
/// At idle priority, and only once the host has the hello (or 10 s passed): a module being
/// linked holds the one vCPU in the kernel whatever its priority, and the ports and the hello
/// come first (a Mount that needs these modules waits for them anyway). crun's sealed copy is
/// made there too, before the modules.
func loadRestInBackground(_ rest: ModuleLoader) {
    startThread {
        helloSent.wait(timeoutMs: 10_000)
        if skiff_set_thread_idle_priority() != 0 { log("idle priority for the module loader: errno \(errno)") }
        GuestInit.sealExecutable("/usr/bin/crun")
        var loader = rest
        load(ModuleLoader.shareModules, with: &loader)
        service.markShareModulesLoaded()
        log("share modules loaded")
        // The pod's roots come on disks (the host said so on the kernel command line): their
        // filesystems load now, not at the first disk mount, which would wait for them.
        let disksEarly = GuestFacts.kernelArguments().contains("skiff.disks=early")
        let early = disksEarly ? [ModuleLoader.scsiModules, ModuleLoader.diskFilesystemModules] : []
        for group in [ModuleLoader.backgroundModules] + early {
            load(group, with: &loader)
            service.markModulesLoaded(group)
        }
        service.markModulesLoaded()
        log("all modules loaded")
    }
}

guard let controlPath = option("--control") ?? GuestInit.findPort(named: "skiff.agent") else {
    log("no skiff.agent port")
    exit(1)
}
let stdioPath = option("--stdio") ?? GuestInit.findPort(named: "skiff.stdio", timeout: .seconds(1))
// Without a stdio port there is no hello to wait for.
if stdioPath == nil { helloSent.open() }

/// Opens `path` and runs `serve` on a channel over it, again whenever the other side goes away
/// (a virtio-serial port reads end of file while the host has no connection).
func serveForever(path: String, _ serve: @escaping @Sendable (any Channel) async throws -> Void) async {
    while true {
        let fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY)
        if fd < 0 {
            log("open \(path): \(String(cString: strerror(errno)))")
            try? await Task.sleep(for: .milliseconds(100))
            continue
        }
        // While the host side is not connected the port polls as hung up and reads end of
        // file. Wait with the port open: closing and reopening it would make the guest drop
        // whatever the host sent in between (the first request, typically).
        var reported = false
        while true {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&poller, 1, 0) >= 0, poller.revents & Int16(POLLHUP) == 0 { break }
            if !reported { log("\(path): waiting for the host"); reported = true }
            try? await Task.sleep(for: .milliseconds(2))
        }
        do {
            let channel = try await NIOPipeBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 64 << 10))
                // Not before `serve` has put its handlers in: the host's first request would be lost.
                .channelOption(.autoRead, value: false)
                .takingOwnershipOfDescriptor(inputOutput: fd).get()
            try await serve(channel)
            log("\(path): serving")
            try await channel.closeFuture.get()
            log("\(path): the host went away")
        } catch {
            log("\(path): \(error)")
        }
        try? await Task.sleep(for: .milliseconds(10))
    }
}

/// Serves both ports until the VM ends.
func serveBothPorts(control controlPath: String, stdio stdioPath: String?) async {
    let server = TTRPCServer(services: [service])
    /// The control port serves: the host may call once it hears the hello.
    let controlServing = Milestone()
    await withTaskGroup(of: Void.self) { group in
        group.addTask {
            await serveForever(path: controlPath) { channel in
                try await server.serve(on: channel)
                controlServing.reach()
            }
        }
        if let stdioPath {
            group.addTask {
                await serveForever(path: stdioPath) { channel in
                    let mux = try await StdioMux.attach(to: channel)
                    service.attachStdio(mux)
                    // Ready: the host calls once it hears this, instead of probing with pings
                    // (a request sent before the control port is open would be lost).
                    await controlServing.wait()
                    try await mux.sendHello("skiff-agent \(AgentService.version)")
                    helloSent.open()
                }
            }
        }
    }
}

// The top level stays synchronous on purpose: top-level `await` would hand the main thread to
// dispatch_main, whose pthread_exit unwinds the main stack, and in a static executable the
// unwinder's first lookup sorts every FDE of the binary (about 250 million instructions, a
// large share of an emulated guest's boot). The main thread parks instead.
Task.detached { await serveBothPorts(control: controlPath, stdio: stdioPath) }
while true { pause() }
