import Foundation
import Glibc
import Testing

extension ContainerdE2E {
    /// What a busy node does to a runtime all day: many containers and pods made, used and
    /// removed one after another through containerd. Every call succeeds, and afterwards the
    /// census of what Skiff made is empty (withContainerd).
    @Suite(.timeLimit(.minutes(12))) struct CycleTests {
        static let image = "docker.io/library/skiff-test:latest"
        static let runtime = "--runtime io.containerd.skiff.v2"
        static let cycles = 50

        /// Runs `ctr ARGS`; records the failure with the cycle and call, returns whether it worked.
        private func ctr(_ cd: PrivateContainerd, _ arguments: String, cycle: Int, failures: inout [String]) async throws -> Bool {
            let result = try await cd.ctr(arguments)
            if result.status != 0 { failures.append("cycle \(cycle): ctr \(arguments): \(result.output.trimmingCharacters(in: .whitespacesAndNewlines))") }
            return result.status == 0
        }

        @Test func fiftyRunExecKillDeleteCyclesFailNoCallAndLeaveNothing() async throws {
            try await withContainerd { cd in
                var failures: [String] = []
                for cycle in 0..<Self.cycles {
                    let id = "cycle-\(cycle)"
                    _ = try await ctr(cd, "run -d \(Self.runtime) \(Self.image) \(id) sleep 600", cycle: cycle, failures: &failures)
                    // Right after `run -d`: the exec that once failed now and then.
                    let exec = try await cd.ctr("task exec --exec-id e\(cycle) \(id) echo exec-\(cycle)")
                    if exec.status != 0 || exec.output != "exec-\(cycle)\n" {
                        failures.append("cycle \(cycle): exec right after run -d: \(exec.status) \(exec.output)")
                    }
                    _ = try await ctr(cd, "task kill -s SIGKILL \(id)", cycle: cycle, failures: &failures)
                    try await waitUntil(cd, task: id, shows: "STOPPED")
                    _ = try await ctr(cd, "task delete \(id)", cycle: cycle, failures: &failures)
                    _ = try await ctr(cd, "container delete \(id)", cycle: cycle, failures: &failures)
                    if cycle % 10 == 9 {
                        // Nothing accumulates between cycles.
                        let census = SkiffCensus.of(cd.dir)
                        if !census.qemus.isEmpty || !census.vmDirectories.isEmpty || !census.mounts.isEmpty {
                            failures.append("after cycle \(cycle): \(census)")
                        }
                    }
                }
                #expect(failures.isEmpty, "\(failures.count) failures:\n\(failures.joined(separator: "\n"))")
            }
        }

        @Test func fiftyPodsOfTwoContainersEachComeAndGoCleanly() async throws {
            try await withContainerd { cd in
                var failures: [String] = []
                for cycle in 0..<Self.cycles {
                    let pod = "--annotation io.kubernetes.cri.sandbox-id=pod-\(cycle)"
                    let ids = ["pod\(cycle)-a", "pod\(cycle)-b"]
                    for id in ids {
                        _ = try await ctr(cd, "run -d \(pod) \(Self.runtime) \(Self.image) \(id) sleep 600", cycle: cycle, failures: &failures)
                    }
                    let exec = try await cd.ctr("task exec --exec-id e\(cycle) \(ids[1]) echo in-pod")
                    if exec.output != "in-pod\n" { failures.append("cycle \(cycle): exec in the second container: \(exec.output)") }
                    let qemus = skiffQEMUs(of: cd.dir).count
                    if qemus != 1 { failures.append("cycle \(cycle): \(qemus) VMs for one pod") }
                    for id in ids {
                        _ = try await ctr(cd, "task kill -s SIGKILL \(id)", cycle: cycle, failures: &failures)
                        try await waitUntil(cd, task: id, shows: "STOPPED")
                        _ = try await ctr(cd, "task delete \(id)", cycle: cycle, failures: &failures)
                        _ = try await ctr(cd, "container delete \(id)", cycle: cycle, failures: &failures)
                    }
                }
                #expect(failures.isEmpty, "\(failures.count) failures:\n\(failures.joined(separator: "\n"))")
            }
        }
    }
}
