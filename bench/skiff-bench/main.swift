import Foundation
import GuestManager
import NIOCore
import NIOPosix
import Synchronization
import VMController
import VMManager

// skiff-bench boot [--rounds N, default 15]: the boot floor against StartVM-to-agent-ready, and the
// agent's stdio throughput, from one run. Prints medians and a "ratio" line.

/// Unbuffered, so progress shows as it happens.
func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
let arguments = Array(CommandLine.arguments.dropFirst())
guard arguments.first == "boot" else {
    FileHandle.standardError.write(Data("usage: skiff-bench boot [--rounds N]\n".utf8))
    exit(2)
}
let rounds = arguments.firstIndex(of: "--rounds").flatMap { Int(arguments[$0 + 1]) } ?? 15
let image = try GuestImage.locate()
let root = "/tmp/skiff-bench-\(getpid())"
try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: root) }

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }

/// QEMU start (as the VM manager does it) to the floor's READY line on the agent port.
func floorBoot(_ round: Int) async throws -> Double {
    let state = "\(root)/floor\(round)"
    try FileManager.default.createDirectory(atPath: state + "/share", withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: state) }
    // The same VM as the agent's below (share included): only the initramfs differs.
    let document = try VMBuilder(id: "floor\(round)", stateDirectory: state, kernel: image.kernel, initrd: image.floor)
        .share(hostPath: state + "/share", tag: "skiffshare").build()
    let vm = QEMUVirtualMachine(document: document)
    let started = ContinuousClock.now
    try await vm.start()
    guard case let .virtioSerial(control, _) = document.agentChannel else { fatalError("virtio-serial expected") }
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (i, b) in control.socketPath.utf8.enumerated() where i < raw.count - 1 { raw[i] = b }
    }
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    precondition(connected == 0, "connect to the floor's agent port failed")
    var seen: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 64)
    while !String(decoding: seen, as: UTF8.self).contains("READY") {
        let n = read(fd, &buffer, buffer.count)
        if n <= 0 { break }
        seen += buffer[0..<n]
    }
    let elapsed = seconds(ContinuousClock.now - started)
    close(fd)
    if ProcessInfo.processInfo.environment["SKIFF_BENCH_CONSOLE"] != nil {
        say((try? String(contentsOfFile: document.consoleLog, encoding: .utf8)) ?? "")
    }
    _ = try await vm.terminate()
    await vm.close()
    return elapsed
}

/// StartVM to the agent's first answer, through the VM controller; then stdio throughput.
func agentBoot(_ round: Int, measureStdio: Bool) async throws -> (boot: Double, mbps: Double?, idle: VMHostStats?, after: VMHostStats?) {
    let state = "\(root)/vm\(round)"
    let document = try VMBuilder(id: "bench\(round)", stateDirectory: state, image: image)
        .share(hostPath: state + "/share", tag: "skiffshare").build()
    let controller = VMController(id: "bench\(round)", stateDirectory: state)
    try await controller.createVM(document)
    let started = ContinuousClock.now
    try await controller.startVM(bootTimeout: .seconds(120))
    let boot = seconds(ContinuousClock.now - started)
    var mbps: Double?
    var rss: VMHostStats?
    var idle: VMHostStats?
    if measureStdio {
        try await Task.sleep(for: .seconds(3))
        idle = try await controller.stats().host
        let bytes = 200 << 20
        let t0 = ContinuousClock.now
        // dd with 64 KiB blocks: busybox's head reads and writes 4 KiB at a time and cannot
        // pass 30 MB/s in an emulated guest even into /dev/null.
        let result = try await controller.execIntoHost(["dd", "if=/dev/zero", "bs=65536", "count=\(bytes / 65536)"])
        precondition(result.stdout.count == bytes, "short stdout: \(result.stdout.count)")
        mbps = Double(bytes) / 1e6 / seconds(ContinuousClock.now - t0)
        try await Task.sleep(for: .seconds(2))
        rss = try await controller.stats().host
    }
    try await controller.terminateVM()
    return (boot, mbps, idle, rss)
}

/// Where the agent's boot goes, step by step as the VM controller takes them: QEMU up with QMP
/// answering, the guest opening its ports (QEMU's event), the agent's hello after that.
func agentPhases(_ round: Int) async throws -> (qemu: Double, ports: Double, ping: Double) {
    let state = "\(root)/phases\(round)"
    try FileManager.default.createDirectory(atPath: state + "/share", withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: state) }
    let document = try VMBuilder(id: "phases\(round)", stateDirectory: state, image: image)
        .share(hostPath: state + "/share", tag: "skiffshare").build()
    guard case let .virtioSerial(control, stdio) = document.agentChannel else { fatalError("virtio-serial expected") }
    let vm = QEMUVirtualMachine(document: document)
    let t0 = ContinuousClock.now
    try await vm.start()
    let t1 = ContinuousClock.now
    // QEMU's event for the guest opening its ports, watched beside the connection.
    let portsOpen = Task { () -> ContinuousClock.Instant in
        try? await vm.waitForAgentPorts(timeout: .seconds(60))
        return .now
    }
    let guest = try await GuestConnection.connect(
        controlSocket: control.socketPath, stdioSocket: stdio.socketPath, timeout: .seconds(60),
        watch: .init(consoleTail: { "" }, vmExit: { nil }))
    let t3 = ContinuousClock.now
    if ProcessInfo.processInfo.environment["SKIFF_BENCH_CONSOLE"] != nil, seconds(t3 - t1) > 0 {
        say((try? String(contentsOfFile: document.consoleLog, encoding: .utf8)) ?? "")
    }
    await guest.close()
    _ = try await vm.terminate()
    await vm.close()
    let t2 = await portsOpen.value
    return (seconds(t1 - t0), seconds(t2 - t1), seconds(t3 - t2))
}

var floors: [Double] = []
var agents: [Double] = []
var throughput: Double?
var rss: VMHostStats?
var idle: VMHostStats?
for round in 0..<rounds {
    floors.append(try await floorBoot(round))
    let result = try await agentBoot(round, measureStdio: round == rounds - 1)
    agents.append(result.boot)
    throughput = throughput ?? result.mbps
    rss = rss ?? result.after
    idle = idle ?? result.idle
    say(String(format: "round %d: floor %.3f s, StartVM to agent ready %.3f s", round + 1, floors.last!, agents.last!))
}
if let n = ProcessInfo.processInfo.environment["SKIFF_BENCH_PHASES"].flatMap(Int.init) {
    for i in 1...n {
        let p = try await agentPhases(100 + i)
        say(String(format: "phases: %.3f %.3f %.3f", p.qemu, p.ports, p.ping))
    }
}
let phases = try await agentPhases(0)
say(String(format: "agent boot phases: QEMU and QMP up %.3f s, guest opens its ports %.3f s, agent's hello %+.3f s after", phases.qemu, phases.ports, phases.ping))
let accel = document(for: image)
say(String(format: "boot floor (QEMU start to READY, %@): median %.3f s over %d", accel, median(floors), rounds))
say(String(format: "StartVM to agent ready: median %.3f s over %d", median(agents), rounds))
say(String(format: "boot ratio (agent / floor): %.2f (target <= 1.2)", median(agents) / median(floors)))
if let throughput { say(String(format: "agent stdio throughput (200 MiB stdout to the host, dd bs=64k): %.1f MB/s", throughput)) }
func megabytes(_ bytes: Int) -> Double { Double(bytes) / 1e6 }
if let idle {
    say(String(format: "QEMU memory, idle 3 s after boot (256 MiB guest): %.0f MB private (RssAnon), %.0f MB resident", megabytes(idle.privateBytes), megabytes(idle.residentBytes)))
}
if let rss {
    say(String(format: "QEMU memory 2 s after the stream: %.0f MB private, %.0f MB resident", megabytes(rss.privateBytes), megabytes(rss.residentBytes)))
}

func document(for image: GuestImage) -> String { "TCG, kernel \((image.kernel as NSString).lastPathComponent)" }
