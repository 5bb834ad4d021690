import AgentAPI
import Foundation
import Glibc
@testable import GuestAgent
import Testing

/// The agent's cgroup v2 work, over a directory laid out as the kernel lays out a cgroup.
@Suite final class ContainerCgroupTests {
    /// The fake cgroup directories a test made, removed after it.
    private var directories: [String] = []

    deinit { for dir in directories { try? FileManager.default.removeItem(atPath: dir) } }

    private func fakeCgroup(_ files: [String: String]) throws -> ContainerCgroup {
        let dir = "/tmp/skiff-cgroup-\(UUID().uuidString.prefix(8))"
        directories.append(dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for (name, content) in files { try content.write(toFile: dir + "/" + name, atomically: false, encoding: .utf8) }
        return ContainerCgroup(directory: dir)
    }

    @Test func theCgroupOfAProcessIsItsUnifiedHierarchyLine() {
        let text = "12:memory:/ignored\n0::/pods/a b/c1\n"
        #expect(ContainerCgroup.parse(procCgroup: text) == ContainerCgroup(directory: "/sys/fs/cgroup/pods/a b/c1"))
        #expect(ContainerCgroup.parse(procCgroup: "0::/\n") == ContainerCgroup(directory: "/sys/fs/cgroup"))
        #expect(ContainerCgroup.parse(procCgroup: "3:cpu:/x\n") == nil)
        #expect(ContainerCgroup.of(pid: getpid()) != nil || access("/sys/fs/cgroup/cgroup.procs", F_OK) != 0)
    }

    @Test func statsAreReadFromTheKernelsFilesWithMaxAsZero() throws {
        let cgroup = try fakeCgroup([
            "memory.current": "4096\n", "memory.max": "max\n", "pids.current": "3\n", "pids.max": "100\n",
            "memory.stat": "anon 1000\nfile 2000\nkernel_stack 16384\npgfault 7\n",
            "memory.events": "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n",
            "cpu.stat": "usage_usec 500\nuser_usec 300\nsystem_usec 200\nnr_periods 0\n",
        ])
        let stats = cgroup.stats()
        #expect(stats.memoryUsageBytes == 4096 && stats.memoryLimitBytes == 0)
        #expect(stats.memoryAnon == 1000 && stats.memoryFile == 2000 && stats.memoryKernelStack == 16384 && stats.memoryPgfault == 7)
        #expect(stats.memoryOom == 1 && stats.memoryOomKill == 1)
        #expect(stats.cpuUsageUsec == 500 && stats.cpuUserUsec == 300 && stats.cpuSystemUsec == 200)
        #expect(stats.pidsCurrent == 3 && stats.pidsLimit == 100)
        #expect(cgroup.oomKills() == 1)
    }

    @Test func updateWritesOnlyTheLimitsItSetsAndKeepsTheOtherHalfOfCpuMax() throws {
        let cgroup = try fakeCgroup(["memory.max": "max\n", "pids.max": "max\n", "cpu.max": "max 100000\n"])
        try cgroup.update(.with { $0.memoryLimitBytes = 33_554_432; $0.cpuQuotaUsec = 50_000 })
        #expect(readTextFile(cgroup.directory + "/memory.max") == "33554432")
        #expect(readTextFile(cgroup.directory + "/pids.max") == "max\n")
        #expect(readTextFile(cgroup.directory + "/cpu.max") == "50000 100000")
        try cgroup.update(.with { $0.pidsLimit = 0; $0.cpuPeriodUsec = 20_000 })
        #expect(readTextFile(cgroup.directory + "/pids.max") == "max")
        #expect(readTextFile(cgroup.directory + "/cpu.max") == "50000 20000")
    }

    @Test func signallingAGoneCgroupIsNoFailure() throws {
        try ContainerCgroup(directory: "/tmp/skiff-no-such-cgroup").signalAll(SIGKILL)
        try ContainerCgroup(directory: "/tmp/skiff-no-such-cgroup").signalAll(SIGTERM)
    }

    @Test func waitingForAnEventsLineReturnsAtOnceWhenItIsThereAndTimesOutWhenNot() throws {
        let cgroup = try fakeCgroup(["cgroup.events": "populated 1\nfrozen 1\n"])
        #expect(ContainerCgroup.waitForLine("frozen 1", in: cgroup.directory + "/cgroup.events", timeoutMs: 5000))
        let begun = ContinuousClock.now
        #expect(!ContainerCgroup.waitForLine("frozen 0", in: cgroup.directory + "/cgroup.events", timeoutMs: 200))
        #expect(ContinuousClock.now - begun >= .milliseconds(190))
    }
}
