import Foundation
import Glibc
import Testing

extension ContainerdE2E {
    /// The service layer through `ctr`, each test one kind of input that once failed: cgroup
    /// paths with spaces or shell characters, terminals, stdin with a late reader, OOM events,
    /// kill --all after the exit, exec right after `run -d`, and creates racing a boot. Where
    /// runc's shim gives an answer, the expected value is runc's.
    @Suite(.timeLimit(.minutes(10))) struct ServiceLayerTests {
        static let image = ContainerdE2E.CtrRunTests.image
        static let runtime = ContainerdE2E.CtrRunTests.runtime

        /// Runs `command` in the VM of `pod` through shimdiag; its exit code and output.
        private func inVM(_ cd: PrivateContainerd, _ pod: String, _ command: String) async -> (status: Int32, output: String) {
            await cd.shimdiag("exec", "\(pod) sh -c '\(command)'")
        }

        @Test(arguments: ["/pods/a b", "/x$(touch /tmp/INJECTED)", "/y;touch /tmp/INJECTED2", "relative path/c"])
        func everyTaskCallWorksWhateverTheCgroupPathHolds(cgroup: String) async throws {
            try await withContainerd { cd async throws in
                let quoted = "'" + cgroup.replacingOccurrences(of: "'", with: "'\\''") + "'"
                let run = await cd.shellWithCtr("CTR run -d --cgroup \(quoted) \(Self.runtime) \(Self.image) cg sleep 600")
                #expect(run.status == 0, "\(run.output)")
                let metrics = try await cd.ctr("task metrics cg")
                #expect(metrics.status == 0 && metrics.output.contains("memory"), "\(metrics.output)")
                let ps = try await cd.ctr("task ps cg")
                #expect(ps.status == 0 && ps.output.split(separator: "\n").count >= 2, "\(ps.output)")
                // The path is data: the cgroup is made as named, and nothing in it ran.
                let path = "/sys/fs/cgroup" + (cgroup.hasPrefix("/") ? cgroup : "/" + cgroup)
                #expect(await inVM(cd, "cg", "test -d \"\(path.replacingOccurrences(of: "$", with: "\\$"))\"").status == 0, "the cgroup \(path)")
                #expect(await inVM(cd, "cg", "ls /tmp/INJECTED* 2>/dev/null").output.isEmpty, "a command from the cgroup path ran")
                #expect(try await cd.ctr("task kill cg").status == 0)
                #expect(try await cd.ctr("task kill -s SIGKILL cg").status == 0)
                let rm = try await cd.ctr("task rm -f cg")
                #expect(rm.status == 0, "\(rm.output)")
                #expect(try await cd.ctr("container rm cg").status == 0)
            }
        }

        @Test func aTerminalIsTheProcessesControllingTerminalForRunAndExec() async throws {
            try await withContainerd { cd async throws in
                // Writing to /dev/tty needs a controlling terminal, not just a pty on stdio.
                let run = await cd.shellWithCtr("""
                    script -qec "CTR run -t --rm \(Self.runtime) \(Self.image) t2 sh -c 'tty; echo on-the-ctty > /dev/tty; exit 4'" /dev/null; echo "exit $?"
                    """)
                #expect(run.output.contains("/dev/pts/0"), "\(run.output)")
                #expect(run.output.contains("on-the-ctty"), "\(run.output)")
                #expect(run.output.contains("exit 4"), "\(run.output)")
                #expect(try await cd.ctr("run -d \(Self.runtime) \(Self.image) t3 sleep 600").status == 0)
                let exec = await cd.shellWithCtr("""
                    script -qec "CTR task exec -t --exec-id e t3 sh -c 'tty; echo on-the-ctty > /dev/tty; exit 5'" /dev/null; echo "exit $?"
                    """)
                #expect(exec.output.contains("/dev/pts/"), "\(exec.output)")
                #expect(exec.output.contains("on-the-ctty"), "\(exec.output)")
                #expect(exec.output.contains("exit 5"), "\(exec.output)")
                #expect(try await cd.ctr("task rm -f t3").status == 0)
                #expect(try await cd.ctr("container rm t3").status == 0)
            }
        }

        @Test func stdinReachesAnExecWhoseReaderStartsLate() async throws {
            try await withContainerd { cd async throws in
                #expect(try await cd.ctr("run -d \(Self.runtime) \(Self.image) t4 sleep 600").status == 0)
                let exec = await cd.shellWithCtr("head -c 1048576 /dev/zero | CTR task exec --exec-id e t4 sh -c 'sleep 2; wc -c'")
                #expect(exec.status == 0, "\(exec.output)")
                #expect(exec.output.trimmingCharacters(in: .whitespacesAndNewlines) == "1048576")
                #expect(try await cd.ctr("task rm -f t4").status == 0)
                #expect(try await cd.ctr("container rm t4").status == 0)
            }
        }

        @Test func anOOMKillIsPublishedBeforeTheExitForTheInitAndForAnExec() async throws {
            try await withContainerd { cd async throws in
                let log = cd.dir + "/events.log"
                let events = Task { await cd.shellWithCtr("exec CTR events > \(log)") }
                try await Task.sleep(for: .milliseconds(300))
                let run = try await cd.ctr("run --rm --memory-limit 33554432 \(Self.runtime) \(Self.image) o1 sh -c 'tail /dev/zero'")
                #expect(run.status == 137, "\(run.output)")
                #expect(try await cd.ctr("run -d --memory-limit 33554432 \(Self.runtime) \(Self.image) o2 sleep 600").status == 0)
                let exec = try await cd.ctr("task exec --exec-id big o2 sh -c 'tail /dev/zero'")
                #expect(exec.status == 137, "\(exec.output)")
                #expect(try await cd.ctr("task rm -f o2").status == 0)
                #expect(try await cd.ctr("container rm o2").status == 0)
                try await Task.sleep(for: .milliseconds(500))
                _ = try? PrivateContainerd.shell("pkill -f 'ctr --address \(cd.socket) events'")
                _ = await events.value
                let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map(String.init)
                func first(_ topic: String, _ fragment: String) -> Int? {
                    lines.firstIndex { $0.contains(" \(topic) ") && $0.contains(fragment) }
                }
                let oom1 = first("/tasks/oom", "\"o1\""), exit1 = first("/tasks/exit", "\"o1\"")
                #expect(oom1 != nil && exit1 != nil && oom1! < exit1!, "init: \(lines.joined(separator: "\n"))")
                let oom2 = first("/tasks/oom", "\"o2\""), exit2 = first("/tasks/exit", "\"big\"")
                #expect(oom2 != nil && exit2 != nil && oom2! < exit2!, "exec: \(lines.joined(separator: "\n"))")
            }
        }

        @Test func killAllAfterTheTaskExitedSucceedsAsUnderRunc() async throws {
            try await withContainerd { cd async throws in
                #expect(try await cd.ctr("run -d \(Self.runtime) \(Self.image) k6 sh -c 'exit 3'").status == 0)
                try await waitUntil(cd, task: "k6", shows: "STOPPED")
                let kill = try await cd.ctr("task kill --all -s KILL k6")
                #expect(kill.status == 0, "\(kill.output)")
                #expect(try await cd.ctr("task delete k6").status == 0)
                #expect(try await cd.ctr("container delete k6").status == 0)
            }
        }

        @Test func anExecRightAfterRunDetachedSucceedsEveryTime() async throws {
            try await withContainerd { cd async throws in
                var failures: [String] = []
                for i in 0..<20 {
                    #expect(try await cd.ctr("run -d \(Self.runtime) \(Self.image) r\(i) sleep 600").status == 0)
                    let exec = try await cd.ctr("task exec --exec-id e r\(i) true")
                    if exec.status != 0 { failures.append("cycle \(i): \(exec.output)") }
                    #expect(try await cd.ctr("task rm -f r\(i)").status == 0)
                    #expect(try await cd.ctr("container rm r\(i)").status == 0)
                }
                #expect(failures.isEmpty, "\(failures)")
            }
        }

        @Test func twoContainersCreatedWhileTheirPodBootsShareOneVM() async throws {
            try await withContainerd { cd async throws in
                let pod = "--annotation io.kubernetes.cri.sandbox-id=race"
                let both = await cd.shellWithCtr("""
                    CTR run -d \(pod) \(Self.runtime) \(Self.image) ra sleep 600 & a=$!
                    CTR run -d \(pod) \(Self.runtime) \(Self.image) rb sleep 600 & b=$!
                    wait $a; ea=$?; wait $b; eb=$?; echo "exits $ea $eb"
                    """)
                #expect(both.output.contains("exits 0 0"), "\(both.output)")
                #expect(skiffQEMUs(of: cd.dir).count == 1, "one VM for the pod")
                for id in ["ra", "rb"] {
                    let exec = try await cd.ctr("task exec --exec-id e \(id) true")
                    if exec.status != 0 {
                        let vm = await cd.shimdiag("exec", "race sh -c 'dmesg | tail -12; grep -E \"disks|rootfs\" /proc/mounts'")
                        Issue.record("\(id): \(exec.output)\n\(vm.output)")
                    }
                    #expect(try await cd.ctr("task rm -f \(id)").status == 0)
                    #expect(try await cd.ctr("container rm \(id)").status == 0)
                }
            }
        }

        @Test func shimdiagExecCarriesStdinAndATerminalIntoTheVM() async throws {
            try await withContainerd { cd async throws in
                #expect(try await cd.ctr("run -d \(Self.runtime) \(Self.image) d1 sleep 600").status == 0)
                let shimdiag = "\(cd.bin)/shimdiag exec --address \(cd.socket)"
                let piped = await cd.shellWithCtr("head -c 100000 /dev/zero | \(shimdiag) -i d1 wc -c")
                #expect(piped.status == 0 && piped.output.trimmingCharacters(in: .whitespacesAndNewlines) == "100000", "\(piped.output)")
                // A stdin that has ended before the shim opens its side (a small file, /dev/null):
                // what it held arrives and the end follows.
                let file = await cd.shellWithCtr("printf 'line one\\nline two\\n' > \(cd.dir)/stdin.txt; timeout 60 \(shimdiag) -i d1 wc -l < \(cd.dir)/stdin.txt")
                #expect(file.status == 0 && file.output.trimmingCharacters(in: .whitespacesAndNewlines) == "2", "\(file.output)")
                let empty = await cd.shellWithCtr("timeout 60 \(shimdiag) -i d1 wc -c < /dev/null")
                #expect(empty.status == 0 && empty.output.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "\(empty.output)")
                // The terminal without -i: script's stdin here is /dev/null, and what script does
                // at its end (it types into the terminal it gives shimdiag) is not the test's.
                let terminal = await cd.shellWithCtr("""
                    script -qec "stty rows 33 cols 101; \(shimdiag) -t d1 sh -c 'tty; echo on-the-ctty > /dev/tty; stty size; exit 6'" /dev/null; echo "exit $?"
                    """)
                #expect(terminal.output.contains("/dev/pts/"), "\(terminal.output)")
                #expect(terminal.output.contains("on-the-ctty"), "\(terminal.output)")
                #expect(terminal.output.contains("33 101"), "\(terminal.output)")
                #expect(terminal.output.contains("exit 6"), "\(terminal.output)")
                #expect(try await cd.ctr("task rm -f d1").status == 0)
                #expect(try await cd.ctr("container rm d1").status == 0)
            }
        }
    }
}
