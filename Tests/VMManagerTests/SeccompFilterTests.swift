import Foundation
import Glibc
import Testing
@testable import VMManager

/// The allow-list filter the shim starts QEMU under, on real processes: what it allows runs,
/// and the first call it does not allow kills the process (SIGSYS), before that call does
/// anything.
@Suite struct SeccompFilterTests {
    private func run(_ path: String, _ arguments: [String], under filter: SeccompFilter) async throws -> VMManager.ExitStatus {
        let log = "/tmp/skiff-seccomp-\(UUID().uuidString.prefix(8)).log"
        defer { unlink(log) }
        let child = try ChildProcess.spawn(path, arguments: arguments, outputLog: log, filter: filter)
        return await child.wait()
    }

    @Test func aProgramMakingOnlyAllowedCallsRunsUnderQEMUsList() async throws {
        let filter = try QEMUSyscalls.filter.get()
        #expect(try await run("/bin/true", [], under: filter) == .exited(0))
    }

    @Test func aCallOutsideQEMUsListKillsTheProcessBeforeItActs() async throws {
        let filter = try QEMUSyscalls.filter.get()
        // unshare(2) is not on the list: unshare(1) dies making it, and never runs `touch`.
        let marker = "/tmp/skiff-seccomp-marker-\(UUID().uuidString.prefix(8))"
        defer { unlink(marker) }
        #expect(try await run("/usr/bin/unshare", ["--uts", "/usr/bin/touch", marker], under: filter) == .signaled(SIGSYS))
        #expect(access(marker, F_OK) != 0)
        // Without the filter the same command does what it says.
        #expect(try await run("/usr/bin/unshare", ["--uts", "/usr/bin/touch", marker], under: SeccompFilter(allowing: QEMUSyscalls.allowed + ["unshare"])) == .exited(0))
        #expect(access(marker, F_OK) == 0)
    }

    @Test func anUnknownCallNameIsRefusedWhenTheFilterIsBuilt() {
        #expect(throws: VMManagerError.self) { try SeccompFilter(allowing: ["read", "no_such_call"]) }
    }
}
