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

        /// Descriptors and threads of process `pid` (from /proc).
        private func descriptorsAndThreads(of pid: Int32) -> (Int, Int) {
            let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd"))?.count ?? -1
            let threads = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task"))?.count ?? -1
            return (fds, threads)
        }

        @Test func fiftyExecsLeaveTheShimWithTheDescriptorsAndThreadsItHadAndTheGuestWithNoProcess() async throws {
            try await withContainerd { cd in
                #expect(try await cd.ctr("run -d \(Self.runtime) \(Self.image) host sleep 600").status == 0)
                let shim = try #require(skiffShims(of: cd.dir).first)
                // One exec first, so whatever the first exec sets up for good is counted in the baseline.
                _ = try await cd.ctr("task exec --exec-id warm host true")
                let before = descriptorsAndThreads(of: shim)
                var failures: [String] = []
                for cycle in 0..<Self.cycles {
                    let exec = try await cd.ctr("task exec --exec-id x\(cycle) host echo \(cycle)")
                    if exec.output != "\(cycle)\n" { failures.append("exec \(cycle): \(exec.status) \(exec.output)") }
                }
                try await Task.sleep(for: .seconds(1))
                let after = descriptorsAndThreads(of: shim)
                #expect(failures.isEmpty, "\(failures)")
                #expect(after.0 <= before.0, "the shim's descriptors grew from \(before.0) to \(after.0) over \(Self.cycles) execs")
                #expect(after.1 <= before.1 + 2, "the shim's threads grew from \(before.1) to \(after.1)")
                // In the guest: the container's init, and nothing of the execs.
                let ps = await cd.shimdiag("exec", "host sh -c 'ps -o comm | grep -c -e \"^echo\" -e \"^true\"'")
                #expect(ps.output.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "exec processes left in the guest: \(ps.output)")
                try await killAndDelete(cd, "host")
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
