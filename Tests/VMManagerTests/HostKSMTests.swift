import FoundationEssentials
import Glibc
import Testing
@testable import VMManager

@Suite struct HostKSMTests {
    private func runFile(_ content: String) throws -> String {
        let path = "/tmp/skiff-ksm-run-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        #expect(FileManager.default.createFile(atPath: path, contents: Data(content.utf8)))
        return path
    }

    @Test func aStoppedKSMIsStartedAndARunningOneLeftAlone() throws {
        let stopped = try runFile("0\n")
        defer { unlink(stopped) }
        #expect(HostKSM.ensureRunning(runFile: stopped) == .started)
        #expect(try String(contentsOfFile: stopped, encoding: .utf8).hasPrefix("1"))
        #expect(HostKSM.ensureRunning(runFile: stopped) == .alreadyRunning)
    }

    @Test func anUnmergedOrMissingKSMIsReportedAndNotTouched() throws {
        let unmerged = try runFile("2\n")
        defer { unlink(unmerged) }
        guard case .unavailable = HostKSM.ensureRunning(runFile: unmerged) else {
            Issue.record("run = 2 is the administrator's")
            return
        }
        #expect(try String(contentsOfFile: unmerged, encoding: .utf8) == "2\n")
        guard case .unavailable = HostKSM.ensureRunning(runFile: "/nonexistent/ksm/run") else {
            Issue.record("a kernel without KSM")
            return
        }
    }
}
