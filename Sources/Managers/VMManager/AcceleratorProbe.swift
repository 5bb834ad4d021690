import FoundationEssentials
import Glibc

/// Decides between KVM and TCG by booting a real (tiny) guest under KVM: `/dev/kvm` can open
/// and create VMs on hosts where a nested guest then hangs, so only a run proves it works.
///
/// The probe runs with `-cpu host`, as real VMs do (here that alone fails: a nested host
/// refuses an MSR). The probe guest is a 64 KiB firmware whose reset vector writes to QEMU's `isa-debug-exit`
/// port; QEMU exits with status 3 when that instruction ran. Anything else within the timeout
/// means TCG. The answer is cached (by default in /run/skiff, which a reboot clears).
public struct AcceleratorProbe: Sendable {
    public var qemuBinary: String
    public var cacheFile: String?
    public var timeout: Duration

    public init(qemuBinary: String = "/usr/bin/" + QEMUCommandLine.binary,
                cacheFile: String? = "/run/skiff/accelerator", timeout: Duration = .seconds(3)) {
        self.qemuBinary = qemuBinary
        self.cacheFile = cacheFile
        self.timeout = timeout
    }

    /// The accelerator to use: `forced` when given, else the cached or freshly probed answer.
    public func choose(forced: VMDocument.Accelerator? = nil) async -> VMDocument.Accelerator {
        if let forced { return forced }
        if let cacheFile, let cached = try? String(contentsOfFile: cacheFile, encoding: .utf8),
           let accel = VMDocument.Accelerator(rawValue: cached.trimmed()) {
            return accel
        }
        let answer: VMDocument.Accelerator = await kvmRunsAGuest() ? .kvm : .tcg
        if let cacheFile {
            let directory = String(cacheFile[..<(cacheFile.lastIndex(of: "/") ?? cacheFile.startIndex)])
            if !directory.isEmpty { try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
            try? answer.rawValue.write(toFile: cacheFile, atomically: true, encoding: .utf8)
        }
        return answer
    }

    /// Boots the probe firmware under KVM; true only when it ran to its exit instruction.
    public func kvmRunsAGuest() async -> Bool {
        let fd = open("/dev/kvm", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return false }
        close(fd)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("skiff-probe-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        guard (try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)) != nil else { return false }
        defer { try? FileManager.default.removeItem(at: dir) }
        var firmware = [UInt8](repeating: 0xf4, count: 64 << 10)
        // At the reset vector (the last 16 bytes): mov al, 1; out 0xf4, al; hlt; jmp $-1.
        let code: [UInt8] = [0xb0, 0x01, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd]
        firmware.replaceSubrange((firmware.count - 16)..<(firmware.count - 16 + code.count), with: code)
        let firmwarePath = dir.appendingPathComponent("probe.rom").path
        guard FileManager.default.createFile(atPath: firmwarePath, contents: Data(firmware)) else { return false }
        guard let qemu = try? ChildProcess.spawn(qemuBinary, arguments: [
            "-machine", "pc", "-accel", "kvm", "-cpu", "host", "-nodefaults", "-no-user-config", "-display", "none",
            "-m", "16", "-bios", firmwarePath, "-device", "isa-debug-exit,iobase=0xf4,iosize=0x01",
        ], outputLog: dir.appendingPathComponent("qemu.log").path) else { return false }
        let status = await qemu.wait(timeout: timeout)
        if status == nil {
            qemu.signal(SIGKILL)
            _ = await qemu.wait()
        }
        return status == .exited(3)
    }
}
