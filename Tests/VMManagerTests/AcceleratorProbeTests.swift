import Foundation
import Testing
@testable import VMManager

@Suite(.serialized, .timeLimit(.minutes(1))) struct AcceleratorProbeTests {
    private func cachePath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("skiff-accel-\(UUID().uuidString.prefix(8))/accelerator").path
    }

    @Test func aForcedAcceleratorWinsWithoutProbing() async {
        let probe = AcceleratorProbe(qemuBinary: "/nonexistent/qemu", cacheFile: nil)
        #expect(await probe.choose(forced: .kvm) == .kvm)
        #expect(await probe.choose(forced: .tcg) == .tcg)
    }

    @Test func aCachedAnswerIsReusedWithoutProbing() async throws {
        let cache = cachePath()
        defer { try? FileManager.default.removeItem(atPath: (cache as NSString).deletingLastPathComponent) }
        try FileManager.default.createDirectory(atPath: (cache as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try "kvm\n".write(toFile: cache, atomically: true, encoding: .utf8)
        // The binary cannot run, so only the cache can answer kvm.
        #expect(await AcceleratorProbe(qemuBinary: "/nonexistent/qemu", cacheFile: cache).choose() == .kvm)
    }

    @Test func aQEMUThatCannotRunMeansTCG() async {
        let probe = AcceleratorProbe(qemuBinary: "/bin/false", cacheFile: nil)
        #expect(await probe.kvmRunsAGuest() == false)
    }

    @Test func theRealProbeAnswersWithinItsTimeoutCachesItAndLeavesNoQEMU() async throws {
        let cache = cachePath()
        defer { try? FileManager.default.removeItem(atPath: (cache as NSString).deletingLastPathComponent) }
        let probe = AcceleratorProbe(cacheFile: cache, timeout: .seconds(3))
        let started = ContinuousClock.now
        let answer = await probe.choose()
        #expect(ContinuousClock.now - started < .seconds(6))
        #expect(try String(contentsOfFile: cache, encoding: .utf8) == answer.rawValue)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory()).filter { $0.hasPrefix("skiff-probe-\(getpid())") }
        #expect(leftovers.isEmpty)
        let probes = try FileManager.default.contentsOfDirectory(atPath: "/proc").compactMap(Int32.init).filter { pid in
            let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline").map { String(decoding: $0, as: UTF8.self) } ?? ""
            return cmdline.contains("isa-debug-exit") && cmdline.contains("skiff-probe-\(getpid())")
        }
        #expect(probes.isEmpty)
    }
}
