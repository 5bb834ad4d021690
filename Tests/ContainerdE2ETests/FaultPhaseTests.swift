import Foundation
import Glibc
import SkiffSupport
import Testing

extension ContainerdE2E {
    /// The shim, or its QEMU, SIGKILLed at each phase of a pod's life, through containerd as a
    /// user meets it. The shims of each test's containerd stop themselves at the phase
    /// (`SKIFF_FAULT_STOP`, see FaultStop), so the kill lands exactly there. Each case ends with
    /// containerd's own cleanup, an empty census (withContainerd), nothing left in the pod's
    /// network namespace, and a next run that works.
    @Suite(.timeLimit(.minutes(12))) struct FaultPhaseTests {
        static let image = ContainerdE2E.CtrRunTests.image
        static let runtime = ContainerdE2E.CtrRunTests.runtime

        enum Victim: String, Sendable { case shim, qemu }

        struct Case: Sendable, CustomTestStringConvertible {
            let victim: Victim
            let phase: FaultStop
            var testDescription: String { "\(victim.rawValue) killed at \(phase.rawValue)" }
        }

        /// QEMU cannot be killed before it starts; the other phases take both victims.
        static let cases: [Case] = FaultStop.allCases.flatMap { phase in
            (phase == .beforeQEMU ? [Victim.shim] : [.shim, .qemu]).map { Case(victim: $0, phase: phase) }
        }.filter { ProcessInfo.processInfo.environment["FAULT_CASE"].map($0.testDescription.contains) ?? true }

        /// The state letter of process `pid` (/proc/PID/stat: R, S, T for stopped, ...).
        private static func state(of pid: Int32) -> Character? {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return nil }
            return stat[close...].dropFirst(2).first
        }

        /// Waits (90 s at most) for a shim of `cd` to stop itself at its phase; its pid.
        private func stoppedShim(of cd: PrivateContainerd) async throws -> Int32 {
            for _ in 0..<1800 {
                if let pid = skiffShims(of: cd.dir).first(where: { Self.state(of: $0) == "T" }) { return pid }
                try await Task.sleep(for: .milliseconds(50))
            }
            throw Failure(description: "no shim stopped; containerd's log:\n\(cd.logTail())")
        }

        struct Failure: Error, CustomStringConvertible { let description: String }

        /// Runs `body` while letting every shim of `cd` that stops at its phase go on.
        private func resumingShims<T>(of cd: PrivateContainerd, _ body: () async throws -> T) async rethrows -> T {
            let resumer = Task {
                while !Task.isCancelled {
                    for pid in skiffShims(of: cd.dir) where Self.state(of: pid) == "T" { kill(pid, SIGCONT) }
                    try? await Task.sleep(for: .milliseconds(50))
                }
            }
            defer { resumer.cancel() }
            return try await body()
        }

        /// Waits (30 s at most) until task `id` is no longer RUNNING (stopped, or gone).
        private func waitUntilNotRunning(_ cd: PrivateContainerd, _ id: String) async throws {
            for _ in 0..<600 {
                let line = try await cd.ctr("task ls").output.split(separator: "\n").first { $0.hasPrefix(id + " ") }
                if line?.contains("RUNNING") != true { return }
                try await Task.sleep(for: .milliseconds(50))
            }
            Issue.record("task \(id) still RUNNING after its \(id) fault")
        }

        @Test(arguments: cases) func aKillAtEachPhaseEndsCleanly(_ fault: Case) async throws {
            let network = fault.phase == .duringNetworkSetup ? try NetworkTests.PodNetwork() : nil
            defer { network?.remove() }
            let options = (network.map { "--with-ns network:\($0.path) " } ?? "") + Self.runtime
                + (fault.phase == .duringSCSIAttach ? " --annotation io.skiff.rootfs=block" : "")
            try await withContainerd(environment: ["\(FaultStop.variable)=\(fault.phase.rawValue)"]) { cd in
                let id = "fp"
                let pod = "--annotation io.kubernetes.cri.sandbox-id=fpod"
                let call: Task<(status: Int32, output: String), any Error>
                if fault.phase == .duringDelete {
                    // A second container keeps the VM up through the first one's Delete (the
                    // last container's Delete ends the VM before it releases anything).
                    #expect(try await cd.ctr("run -d \(pod) \(options) \(Self.image) \(id) sleep 600").status == 0)
                    #expect(try await cd.ctr("run -d \(pod) \(options) \(Self.image) \(id)-side sleep 600").status == 0)
                    #expect(try await cd.ctr("task kill -s SIGKILL \(id)").status == 0)
                    try await waitUntil(cd, task: id, shows: "STOPPED")
                    call = Task { try await cd.ctr("task delete \(id)") }
                } else {
                    call = Task { try await cd.ctr("run -d \(options) \(Self.image) \(id) sleep 600") }
                }
                let shim = try await stoppedShim(of: cd)
                switch fault.victim {
                case .shim:
                    kill(shim, SIGKILL)
                case .qemu:
                    let qemus = skiffQEMUs(of: cd.dir)
                    let processes = (try? PrivateContainerd.shell("ps -eo pid,stat,args | grep -e qemu -e shim-skiff | grep -v grep")) ?? ""
                    #expect(!qemus.isEmpty, "no QEMU at \(fault.phase.rawValue): \(processes)")
                    for pid in qemus { kill(pid, SIGKILL) }
                    kill(shim, SIGCONT)
                }
                let result = try await call.value
                if fault.victim == .shim {
                    #expect(result.status != 0, "the call outlived its shim: \(result.output)")
                }
                try await waitUntilNotRunning(cd, id)
                // As a user cleans up after a fault.
                for container in fault.phase == .duringDelete ? [id, id + "-side"] : [id] {
                    _ = try await cd.ctr("task rm -f \(container)")
                    let removed = try await cd.ctr("container rm \(container)")
                    let tasks = try await cd.ctr("task ls").output
                    #expect(removed.status == 0, "container rm \(container): \(removed.output)\n\(tasks)\n\(cd.logTail(lines: 30))")
                }
                // The next pod, its shim let through the phase, works.
                let next = try await resumingShims(of: cd) { try await cd.ctr("run --rm \(options) \(Self.image) \(id)-next echo next") }
                #expect(next.output == "next\n", "the run after the fault: \(next.output)")
                if let network { #expect(network.leftovers().isEmpty, "left in the pod's namespace: \(network.leftovers())") }
            }
        }
    }
}
