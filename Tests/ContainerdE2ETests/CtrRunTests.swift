import ContainerdAPI
import Foundation
import Glibc
import SwiftProtobuf
import Testing
import TTRPC
import VMManager

extension ContainerdE2E {
    /// `ctr run --runtime io.containerd.skiff.v2` end to end: the container runs in its own VM and
    /// behaves as under runc, and nothing is left afterwards.
    @Suite(.timeLimit(.minutes(5))) struct CtrRunTests {
        static let image = "docker.io/library/skiff-test:latest"
        static let runtime = "--runtime io.containerd.skiff.v2"

        @Test func echoPrintsInsideItsOwnVMAndTheExitCodeComesBack() async throws {
            try await withContainerd { cd in
                let run = try await cd.ctr("run --rm \(Self.runtime) \(Self.image) e1 sh -c 'echo hello from skiff; uname -r; exit 3'")
                #expect(run.status == 3, "\(run.output)")
                let lines = run.output.split(separator: "\n").map(String.init)
                #expect(lines.first == "hello from skiff")
                // The guest's kernel, not the host's: the container ran in the VM.
                var host = utsname()
                uname(&host)
                let hostRelease = withUnsafeBytes(of: &host.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
                #expect(lines.dropFirst().first?.hasSuffix("-amd64") == true)
                #expect(lines.dropFirst().first != hostRelease)
            }
        }

        @Test func badIdsAreRefusedCleanly() async throws {
            try await withContainerd { cd in
                let run = try await cd.ctr("run --rm \(Self.runtime) \(Self.image) ../x true")
                #expect(run.status != 0)
                let ok = try await cd.ctr("run --rm \(Self.runtime) \(Self.image) after-bad-id true")
                #expect(ok.status == 0, "\(ok.output)")
            }
        }

        @Test func twoContainersOfOnePodShareOneVMThatEndsAfterTheLastDelete() async throws {
            try await withContainerd { cd in
                let pod = "--annotation io.kubernetes.cri.sandbox-id=pod1"
                #expect(try await cd.ctr("run -d \(pod) \(Self.runtime) \(Self.image) p1a sleep 300").status == 0)
                #expect(try await cd.ctr("run -d \(pod) \(Self.runtime) \(Self.image) p1b sleep 300").status == 0)
                #expect(skiffQEMUs(of: cd.dir).count == 1, "one VM for the pod")
                let tasks = try await cd.ctr("task ls").output
                #expect(tasks.contains("p1a") && tasks.contains("p1b") && tasks.components(separatedBy: "RUNNING").count == 3, "\(tasks)")
                for id in ["p1a", "p1b"] {
                    #expect(try await cd.ctr("task kill -s SIGKILL \(id)").status == 0)
                    try await waitUntil(cd, task: id, shows: "STOPPED")
                    #expect(try await cd.ctr("task delete \(id)").status == 0)
                    if id == "p1a" { #expect(skiffQEMUs(of: cd.dir).count == 1, "the VM stays while p1b runs") }
                    #expect(try await cd.ctr("container delete \(id)").status == 0)
                }
                #expect(skiffQEMUs(of: cd.dir).isEmpty, "the VM ends with the last container")
            }
        }

        /// What the CRI plugin asks of a pod, through `ctr`: the sandbox container joins a network
        /// namespace made on the host, and the app container joins the sandbox's namespaces by
        /// the /proc paths of the pid containerd was told.
        @Test func aCRIShapedPodRunsItsContainersInSharedNamespacesInsideTheVM() async throws {
            let netns = "skiff-e2e-\(getpid())"
            #expect(await PrivateContainerd.system("ip netns add \(netns)") == 0)
            defer { _ = try? PrivateContainerd.shell("ip netns delete \(netns)") }
            try await withContainerd { cd in
                let pod = "--annotation io.kubernetes.cri.sandbox-id=cri1"
                let sandbox = try await cd.ctr("run -d \(pod) --with-ns network:/var/run/netns/\(netns) \(Self.runtime) \(Self.image) cri-sandbox sleep 300")
                #expect(sandbox.status == 0, "\(sandbox.output)")
                try await waitUntil(cd, task: "cri-sandbox", shows: "RUNNING")
                let listed = try await cd.ctr("task ls").output
                let line = listed.split(separator: "\n").first { $0.hasPrefix("cri-sandbox") } ?? ""
                let pid = try #require(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }, "\(listed)")
                // The pod's namespace on the host has loopback only, so the VM got no NIC: loopback only.
                let links = try await cd.ctr("task exec --exec-id links cri-sandbox ip -o link")
                #expect(links.status == 0 && links.output.contains("lo:") && !links.output.contains("eth"), "\(links.output)")
                let show = "sh -c 'for n in net ipc uts; do readlink /proc/self/ns/$n; done'"
                let inSandbox = try await cd.ctr("task exec --exec-id ns cri-sandbox \(show)")
                let app = try await cd.ctr("""
                    run --rm \(pod) --with-ns network:/proc/\(pid)/ns/net --with-ns ipc:/proc/\(pid)/ns/ipc \
                    --with-ns uts:/proc/\(pid)/ns/uts \(Self.runtime) \(Self.image) cri-app \(show)
                    """)
                #expect(app.status == 0, "\(app.output)")
                #expect(inSandbox.status == 0 && inSandbox.output.contains("ipc:["), "\(inSandbox.output)")
                #expect(app.output == inSandbox.output, "app \(app.output) / sandbox \(inSandbox.output)")
                #expect(skiffQEMUs(of: cd.dir).count == 1, "one VM for the pod")
                #expect(try await cd.ctr("task kill -s SIGKILL cri-sandbox").status == 0)
                try await waitUntil(cd, task: "cri-sandbox", shows: "STOPPED")
                #expect(try await cd.ctr("task delete cri-sandbox").status == 0)
                #expect(try await cd.ctr("container delete cri-sandbox").status == 0)
            }
        }

        @Test func shimdiagRunsCommandsInTheVMListsTasksSharesAPathAndFindsTheShim() async throws {
            try await withContainerd { cd in
                #expect(try await cd.ctr("run -d \(Self.runtime) \(Self.image) dg1 sleep 300").status == 0)
                try await waitUntil(cd, task: "dg1", shows: "RUNNING")
                // A command in the VM itself: the guest's kernel, its output and its exit code.
                let uname = await cd.shimdiag("exec", "dg1 uname -r")
                #expect(uname.status == 0 && uname.output.hasSuffix("-amd64\n"), "\(uname.output)")
                let failing = await cd.shimdiag("exec", "dg1 sh -c 'echo on stderr >&2; exit 3'")
                #expect(failing.status == 3 && failing.output == "on stderr\n", "\(failing.output)")
                // The VM's own root, not the container's: the agent is PID 1 there.
                let vmInit = await cd.shimdiag("exec", "dg1 cat /proc/1/comm")
                #expect(vmInit.output == "skiff-agent\n", "\(vmInit.output)")
                #expect(await cd.shimdiag("tasks", "dg1").output == "dg1\n")
                // The pid is the shim's: the process serving this task.
                let pid = await cd.shimdiag("pid", "dg1")
                let cmdline = FileManager.default.contents(atPath: "/proc/\(pid.output.trimmingCharacters(in: .whitespacesAndNewlines))/cmdline")
                    .map { String(decoding: $0, as: UTF8.self) } ?? ""
                #expect(cmdline.contains("containerd-shim-skiff-v2") && cmdline.contains("dg1"), "pid \(pid.output): \(cmdline)")
                // The shim runs without Foundation's full library (its ICU data alone is megabytes
                // of each shim's resident memory): FoundationEssentials only.
                let maps = FileManager.default.contents(atPath: "/proc/\(pid.output.trimmingCharacters(in: .whitespacesAndNewlines))/maps")
                    .map { String(decoding: $0, as: UTF8.self) } ?? ""
                #expect(maps.contains("containerd-shim-skiff-v2") && !maps.contains("libFoundation.so") && !maps.contains("ICU"),
                        "the shim maps \(maps.split(separator: "\n").compactMap { $0.split(separator: " ").last }.filter { $0.contains("Foundation") || $0.contains("ICU") })")
                // A host directory shared read-only into the VM at a path of our choosing.
                let host = cd.dir + "/diag-share"
                try FileManager.default.createDirectory(atPath: host, withIntermediateDirectories: true)
                try "from the host\n".write(toFile: host + "/f", atomically: false, encoding: .utf8)
                #expect(await cd.shimdiag("share", "--read-only dg1 \(host) /mnt/diag").status == 0)
                #expect(await cd.shimdiag("exec", "dg1 cat /mnt/diag/f").output == "from the host\n")
                #expect(await cd.shimdiag("exec", "dg1 touch /mnt/diag/x").status != 0)
                // A share the guest cannot mount is refused and leaves no host bind behind.
                func vmMounts() -> Int { SkiffCensus.of(cd.dir).mounts.count }
                let mountsBefore = vmMounts()
                let refused = await cd.shimdiag("share", "dg1 \(host) /proc/skiff-no-such-dir")
                #expect(refused.status != 0, "\(refused.output)")
                #expect(vmMounts() == mountsBefore, "a refused share left a host mount")
                let stacks = await cd.shimdiag("stacks", "dg1")
                #expect(stacks.output.contains("containerd-shim") && stacks.output.contains("skiff-agent"), "\(stacks.output)")
                // No shim for an unknown pod: a clear error, not a hang.
                let unknown = await cd.shimdiag("pid", "no-such-pod")
                #expect(unknown.status != 0 && unknown.output.contains("no shim answers"), "\(unknown.output)")
                #expect(try await cd.ctr("task kill -s SIGKILL dg1").status == 0)
                try await waitUntil(cd, task: "dg1", shows: "STOPPED")
                #expect(try await cd.ctr("task delete dg1").status == 0)
                #expect(try await cd.ctr("container delete dg1").status == 0)
            }
        }

        @Test func sigkillOfQEMUStopsTheTaskWhichThenDeletesCleanly() async throws {
            try await withContainerd { cd in
                #expect(try await cd.ctr("run -d \(Self.runtime) \(Self.image) q1 sleep 300").status == 0)
                let qemus = skiffQEMUs(of: cd.dir)
                #expect(qemus.count == 1)
                for pid in qemus { kill(pid, SIGKILL) }
                // The shim sees its VM go: the task exits, and the shim stays to answer.
                try await waitUntil(cd, task: "q1", shows: "STOPPED")
                #expect(try await cd.ctr("task delete q1").status == 0)
                #expect(try await cd.ctr("container delete q1").status == 0)
                // And the next container runs.
                #expect(try await cd.ctr("run --rm \(Self.runtime) \(Self.image) q2 true").status == 0)
            }
        }

        @Test func sigkillOfTheShimThenContainerdsCleanupLeavesNothing() async throws {
            try await withContainerd { cd in
                #expect(try await cd.ctr("run -d \(Self.runtime) \(Self.image) k1 sleep 300").status == 0)
                #expect(skiffQEMUs(of: cd.dir).count == 1)
                #expect(killShim(of: cd.dir, serving: "k1") == 1)
                // containerd sees the shim go, runs `shim delete`, and marks the task stopped.
                try await waitForDeadShim(cd)
                for _ in 0..<100 where !skiffQEMUs(of: cd.dir).isEmpty { try await Task.sleep(for: .milliseconds(50)) }
                _ = try await cd.ctr("task delete k1")
                #expect(try await cd.ctr("container delete k1").status == 0)
            }
        }

        @Test func pauseResumeMetricsAndAMemoryUpdate() async throws {
            try await withContainerd { cd in
                #expect(try await cd.ctr("run -d \(Self.runtime) \(Self.image) m1 sleep 300").status == 0)
                #expect(try await cd.ctr("task pause m1").status == 0)
                try await waitUntil(cd, task: "m1", shows: "PAUSED")
                #expect(try await cd.ctr("task resume m1").status == 0)
                try await waitUntil(cd, task: "m1", shows: "RUNNING")
                let metrics = try await cd.ctr("task metrics m1")
                #expect(metrics.status == 0, "\(metrics.output)")
                // ctr prints the cgroup v2 figures it decoded from our Stats answer.
                #expect(metrics.output.contains("memory.usage_in_bytes") || metrics.output.contains("memory"), "\(metrics.output)")
                #expect(metrics.output.contains("pids.current"), "\(metrics.output)")
                // ctr 1.6 has no `task update`: call the shim's Task/Update as containerd does,
                // with the OCI LinuxResources as JSON in the Any.
                let address = try String(contentsOfFile: "\(cd.dir)/state/io.containerd.runtime.v2.task/default/m1/address", encoding: .utf8)
                do {
                    let client = try await TTRPCClient.connect(unixSocket: String(address.dropFirst("unix://".count)))
                    var resources = Google_Protobuf_Any()
                    resources.typeURL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
                    resources.value = Data(#"{"memory":{"limit":67108864}}"#.utf8)
                    var metadata = TTRPCMetadata()
                    metadata.append("default", for: "containerd-namespace-ttrpc")
                    _ = try await Containerd_Task_V2_TaskClient(client).update(
                        .with { $0.id = "m1"; $0.resources = resources }, options: TTRPCCallOptions(metadata: metadata))
                    await client.close()
                }
                let after = try await cd.ctr("task metrics m1").output
                #expect(after.contains("67108864"), "\(after)")
                #expect(try await cd.ctr("task kill -s SIGKILL m1").status == 0)
                try await waitUntil(cd, task: "m1", shows: "STOPPED")
                #expect(try await cd.ctr("task delete m1").status == 0)
                #expect(try await cd.ctr("container delete m1").status == 0)
            }
        }

        @Test func stdinReachesTheContainerAndItsEndEndsTheProcess() async throws {
            try await withContainerd { cd in
                let run = await cd.shellWithCtr("printf 'line one\\nline two\\n' | CTR run --rm \(Self.runtime) \(Self.image) s1 sh -c 'cat; echo stdin closed'")
                #expect(run.status == 0, "\(run.output)")
                #expect(run.output == "line one\nline two\nstdin closed\n", "\(run.output)")
            }
        }

        @Test func aTerminalWithItsSizeReachesTheContainer() async throws {
            try await withContainerd { cd in
                // `script` gives ctr a terminal of 33x101; ctr hands it to the task and resizes.
                let run = await cd.shellWithCtr("""
                    script -qec "stty rows 33 cols 101; CTR run --rm -t \(Self.runtime) \(Self.image) t1 sh -c 'test -t 0 && test -t 1 && echo IS-A-TTY; sleep 1; stty size'" /dev/null
                    """)
                #expect(run.status == 0, "\(run.output)")
                #expect(run.output.contains("IS-A-TTY"), "\(run.output)")
                #expect(run.output.contains("33 101"), "\(run.output)")
            }
        }

        @Test func execRunsInTheContainerWithItsOutputExitCodeAndSignals() async throws {
            try await withContainerd { cd in
                #expect(try await cd.ctr("run -d \(Self.runtime) \(Self.image) x1 sleep 300").status == 0)
                // Output and exit code; the exec'd process shares the container's PID namespace.
                let exec = try await cd.ctr("task exec --exec-id e1 x1 sh -c 'echo in exec; cat /proc/1/cmdline | tr \"\\\\0\" \" \"; echo; exit 7'")
                #expect(exec.status == 7, "\(exec.output)")
                #expect(exec.output.hasPrefix("in exec\nsleep 300"), "\(exec.output)")
                // stdin of an exec.
                let cat = await cd.shellWithCtr("echo piped | CTR task exec --exec-id e2 x1 cat")
                #expect(cat.status == 0 && cat.output == "piped\n", "\(cat.output)")
                // A signal to an exec ends it with the signal's status; the container stays.
                let killed = await cd.shellWithCtr("""
                    CTR task exec --exec-id long x1 sleep 100 & ctr_pid=$!
                    i=0; until CTR task ps x1 >/dev/null 2>&1 && [ $i -gt 20 ]; do sleep 0.1; i=$((i+1)); done
                    CTR task kill --exec-id long -s SIGKILL x1; wait $ctr_pid; echo "exec exit $?"
                    """)
                #expect(killed.output.contains("exec exit 137"), "\(killed.output)")
                try await waitUntil(cd, task: "x1", shows: "RUNNING")
                // Bad execs are refused and the shim stays up.
                #expect(try await cd.ctr("task exec --exec-id bad x1 /no/such/binary").status != 0)
                #expect(try await cd.ctr("task exec --exec-id ../x x1 true").status != 0)
                #expect(try await cd.ctr("task exec --exec-id e3 x1 sh -c 'exit 0'").status == 0)
                // An exec's stdin is read until the exec ends, even while its writer keeps the fifo
                // open (here for 8 s after `true` is gone): no reader is left behind.
                // Settled first: the execs above have ended, leaving at most the init's reader.
                var before = shimThreads(of: cd.dir, named: "skiff-stdin")
                for _ in 0..<60 where (before ?? 0) > 1 {
                    try await Task.sleep(for: .milliseconds(50))
                    before = shimThreads(of: cd.dir, named: "skiff-stdin")
                }
                #expect((before ?? 2) <= 1, "stdin readers once the earlier execs ended: \(String(describing: before))")
                async let held = cd.shellWithCtr("sleep 8 | CTR task exec --exec-id e4 x1 true")
                var readers = before
                for _ in 0..<100 where readers == before {
                    try await Task.sleep(for: .milliseconds(50))
                    readers = shimThreads(of: cd.dir, named: "skiff-stdin")
                }
                #expect(readers == before.map { $0 + 1 }, "the exec's stdin reader: \(String(describing: readers)) (\(String(describing: before)) before)")
                for _ in 0..<120 where readers != before {
                    try await Task.sleep(for: .milliseconds(50))
                    readers = shimThreads(of: cd.dir, named: "skiff-stdin")
                }
                #expect(readers == before, "stdin readers after the exec ended: \(String(describing: readers)) (\(String(describing: before)) before)")
                #expect(await held.status == 0)
                #expect(try await cd.ctr("task kill -s SIGKILL x1").status == 0)
                try await waitUntil(cd, task: "x1", shows: "STOPPED")
                // No exec into a stopped task.
                #expect(try await cd.ctr("task exec --exec-id late x1 true").status != 0)
                #expect(try await cd.ctr("task delete x1").status == 0)
                #expect(try await cd.ctr("container delete x1").status == 0)
            }
        }

        @Test func bindMountsReachTheContainerAndReadOnlyHolds() async throws {
            try await withContainerd { cd in
                let host = cd.dir + "/volumes"
                try FileManager.default.createDirectory(atPath: host + "/ro", withIntermediateDirectories: true)
                try FileManager.default.createDirectory(atPath: host + "/rw", withIntermediateDirectories: true)
                try "from the host\n".write(toFile: host + "/ro/hello", atomically: false, encoding: .utf8)
                try "a single file\n".write(toFile: host + "/file.conf", atomically: false, encoding: .utf8)
                let run = try await cd.ctr("""
                    run --rm \(Self.runtime) \
                    --mount type=bind,src=\(host)/ro,dst=/data/ro,options=rbind:ro \
                    --mount type=bind,src=\(host)/rw,dst=/data/rw,options=rbind:rw \
                    --mount type=bind,src=\(host)/file.conf,dst=/etc/skiff.conf,options=rbind:ro \
                    \(Self.image) b1 sh -c 'cat /data/ro/hello; cat /etc/skiff.conf; touch /data/ro/x 2>&1 | grep -o Read-only; echo written > /data/rw/out'
                    """)
                #expect(run.status == 0, "\(run.output)")
                #expect(run.output == "from the host\na single file\nRead-only\n", "\(run.output)")
                #expect(try String(contentsOfFile: host + "/rw/out", encoding: .utf8) == "written\n")
                #expect(!FileManager.default.fileExists(atPath: host + "/ro/x"))
                // A source that does not exist is refused, and the shim stays up for the next run.
                let missing = try await cd.ctr("run --rm \(Self.runtime) --mount type=bind,src=/no/such/dir,dst=/x,options=rbind \(Self.image) b2 true")
                #expect(missing.status != 0)
                #expect(try await cd.ctr("run --rm \(Self.runtime) \(Self.image) b3 true").status == 0)
            }
        }

        @Test func signalsReachTheInitAndKillAllReachesEveryProcess() async throws {
            try await withContainerd { cd in
                let term = await cd.shellWithCtr("""
                    CTR run --rm \(Self.runtime) \(Self.image) k1 sh -c 'trap "exit 42" TERM; while :; do sleep 0.1; done' & p=$!
                    i=0; until CTR task ls | grep -q 'k1.*RUNNING' || [ $i -gt 300 ]; do sleep 0.1; i=$((i+1)); done
                    # Until the shell has set its trap, PID 1 of the container ignores TERM: resend.
                    j=0; while kill -0 $p 2>/dev/null && [ $j -lt 50 ]; do CTR task kill -s SIGTERM k1 2>/dev/null; sleep 0.2; j=$((j+1)); done
                    wait $p; echo "run exit $?"
                    """)
                #expect(term.output.contains("run exit 42"), "\(term.output)")

                #expect(try await cd.ctr("run -d \(Self.runtime) \(Self.image) k2 sh -c 'trap \"\" TERM; sleep 300 & sleep 300 & wait'").status == 0)
                try await waitUntil(cd, task: "k2", shows: "RUNNING")
                // `ctr task ps` lists every process of the container: the shell and its two sleeps.
                var ps = ""
                for _ in 0..<50 {
                    ps = try await cd.ctr("task ps k2").output
                    if ps.split(separator: "\n").dropFirst().count >= 3 { break }
                    try await Task.sleep(for: .milliseconds(100))
                }
                #expect(ps.split(separator: "\n").dropFirst().count == 3, "ctr task ps k2: \(ps)")
                // The init ignores TERM; KILL to every process of the container stops it.
                #expect(try await cd.ctr("task kill -a -s SIGKILL k2").status == 0)
                try await waitUntil(cd, task: "k2", shows: "STOPPED")
                #expect(try await cd.ctr("task delete k2").status == 0)
                #expect(try await cd.ctr("container delete k2").status == 0)
            }
        }
    }
}
