import Foundation
import GuestAgent
import Testing

/// Onlining hot-added CPUs, over a directory laid out as /sys/devices/system/cpu.
@Suite struct CPUOnlineTests {
    @Test func offlineCPUsAreWrittenOnlineAndCPUsWithoutAnOnlineFileCount() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("cpus-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        for (cpu, state) in [("cpu0", nil), ("cpu1", "1"), ("cpu2", "0"), ("cpufreq", "0")] as [(String, String?)] {
            try FileManager.default.createDirectory(atPath: "\(root)/\(cpu)", withIntermediateDirectories: true)
            if let state { try (state + "\n").write(toFile: "\(root)/\(cpu)/online", atomically: false, encoding: .utf8) }
        }
        let online = try await CPUOnline(root: root).onlineAll(wanted: 3, timeout: .seconds(1))
        #expect(online == 3)
        #expect(try String(contentsOfFile: "\(root)/cpu2/online", encoding: .utf8).hasPrefix("1"))
        // Not a CPU: left alone.
        #expect(try String(contentsOfFile: "\(root)/cpufreq/online", encoding: .utf8) == "0\n")
    }

    @Test func waitsForACPUThatIsNotThereYetThenGivesUpWithTheCount() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("cpus-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: "\(root)/cpu0", withIntermediateDirectories: true)
        let late = Task {
            try await Task.sleep(for: .milliseconds(100))
            try FileManager.default.createDirectory(atPath: "\(root)/cpu1", withIntermediateDirectories: true)
            try "0\n".write(toFile: "\(root)/cpu1/online", atomically: false, encoding: .utf8)
        }
        #expect(try await CPUOnline(root: root).onlineAll(wanted: 2, timeout: .seconds(5)) == 2)
        try await late.value
        let started = ContinuousClock.now
        #expect(try await CPUOnline(root: root).onlineAll(wanted: 3, timeout: .milliseconds(200)) == 2)
        #expect(ContinuousClock.now - started >= .milliseconds(200))
    }
}
