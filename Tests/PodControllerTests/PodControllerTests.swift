import ContainerdAPI
import Foundation
import Glibc
import GuestManager
@testable import PodController
import SkiffSupport
import Testing
import TTRPC
import VMController

/// The pod over fakes: the VM's lifetime under concurrent creates, creates that fail part
/// way, deletes that fail and are retried, the VM dying mid-call, and the codes errors carry.
@Suite(.timeLimit(.minutes(1))) struct PodControllerTests {
    @Test func twoCreatesDuringTheBootShareTheOneVM() async throws {
        let rig = PodRig { $0.state.withLock { $0.holdBoot = true } }
        defer { rig.cleanUp() }
        let a = try rig.bundle("a", sandbox: "pod1")
        let b = try rig.bundle("b", sandbox: "pod1")
        async let first = rig.pod.create(a)
        async let second = rig.pod.create(b)
        // Both wait for the one boot; let it finish once the first holds it.
        while rig.vm?.releaseBoot() != true { try await Task.sleep(for: .milliseconds(5)) }
        let pids = try await (first, second)
        #expect(pids.0 > 0 && pids.1 > 0 && pids.0 != pids.1)
        #expect(rig.vms.count == 1)
        #expect(rig.vm?.state.withLock { $0.created } == 1 && rig.vm?.state.withLock { $0.started } == 1)
        #expect(rig.vm?.guestAgent.containers == ["a": "created", "b": "created"])
    }

    @Test func aFailedCreateDoesNotEndTheVMAnotherContainerUses() async throws {
        let rig = PodRig { $0.guestAgent.fail("createContainer b") }
        defer { rig.cleanUp() }
        _ = try await rig.pod.create(try rig.bundle("a", sandbox: "pod1"))
        await #expect(throws: SkiffError.self) { _ = try await rig.pod.create(try rig.bundle("b", sandbox: "pod1")) }
        #expect(rig.vm?.state.withLock { $0.terminated } == 0)
        #expect(try await rig.pod.start(id: "a", execID: "") > 0, "the first container still runs in the VM")
        #expect(await rig.pod.isEmpty == false)
    }

    @Test func aCreateFailingAfterTwoSharesUndoesThemAndTheVMItWasAlone() async throws {
        let rig = PodRig { $0.fakeShares.failMap(after: 2) }
        defer { rig.cleanUp() }
        // Three shares: the bundle and two bind sources; the third map fails.
        let request = try rig.bundle("c", binds: 2)
        await #expect(throws: SkiffError.self) { _ = try await rig.pod.create(request) }
        let vm = try #require(rig.vm)
        #expect(vm.fakeShares.held == 0, "every share reserved was released")
        #expect(rig.rootfs.count == 0, "the rootfs mount was undone")
        #expect(access(request.bundle + "/skiff-config.json", F_OK) != 0)
        #expect(access(request.bundle + "/skiff-vm", F_OK) != 0)
        #expect(vm.state.withLock { $0.terminated } == 1, "no container is left to use the VM")
        #expect(await rig.pod.isEmpty)
    }

    @Test func aCreateTheGuestRefusesUndoesEverythingBeforeIt() async throws {
        let rig = PodRig { $0.guestAgent.fail("createContainer", with: TTRPCStatus(.failedPrecondition, "crun create x: bad spec")) }
        defer { rig.cleanUp() }
        let request = try rig.bundle("x", binds: 1)
        do {
            _ = try await rig.pod.create(request)
            Issue.record("create succeeded")
        } catch {
            #expect(error.code == .failedPrecondition)
            #expect(error.message.contains("bad spec"), "\(error.message)")
        }
        #expect(rig.vm?.fakeShares.held == 0 && rig.rootfs.count == 0)
        #expect(rig.vm?.guestAgent.calls.contains("deleteContainer") == true, "the half-made container is deleted in the guest")
    }

    @Test func aFailedStartLeavesTheTaskCreatedAndItStillDeletes() async throws {
        let rig = PodRig { $0.guestAgent.fail("startContainer") }
        defer { rig.cleanUp() }
        _ = try await rig.pod.create(try rig.bundle("s"))
        await #expect(throws: SkiffError.self) { _ = try await rig.pod.start(id: "s", execID: "") }
        #expect(try await rig.pod.state(id: "s", execID: "").status == .created)
        _ = try await rig.pod.delete(id: "s", execID: "")
        #expect(rig.vm?.guestAgent.containers.isEmpty == true)
        #expect(rig.vm?.state.withLock { $0.terminated } == 1)
    }

    @Test func theVMDyingMidCallIsUnavailableAndDeleteStillCleansUp() async throws {
        let rig = PodRig()
        defer { rig.cleanUp() }
        _ = try await rig.pod.create(try rig.bundle("v", binds: 1))
        _ = try await rig.pod.start(id: "v", execID: "")
        let vm = try #require(rig.vm)
        vm.guestAgent.vanish()
        do {
            try await rig.pod.kill(id: "v", execID: "", signal: 15, all: false)
            Issue.record("kill reached a vanished guest")
        } catch {
            #expect(error.code == .unavailable)
        }
        // The exit watcher saw the agent go: the task ended.
        _ = try await rig.pod.wait(id: "v", execID: "")
        _ = try await rig.pod.delete(id: "v", execID: "")
        #expect(vm.fakeShares.held == 0 && rig.rootfs.count == 0)
        #expect(await rig.pod.isEmpty)
    }

    @Test func aVMThatEndsUnderACreatedTaskEndsItAndForcedRemovalWorks() async throws {
        let rig = PodRig()
        defer { rig.cleanUp() }
        _ = try await rig.pod.create(try rig.bundle("e", binds: 1))
        let vm = try #require(rig.vm)
        vm.end()
        // Its init never started, and no agent is left to report it: the VM's end does.
        let exit = try await rig.pod.wait(id: "e", execID: "")
        #expect(exit.status == 255)
        #expect(try await rig.pod.state(id: "e", execID: "").status == .stopped)
        // What `ctr task rm -f` does: kill every process (nothing is left: no failure), delete.
        try await rig.pod.kill(id: "e", execID: "", signal: 9, all: true)
        _ = try await rig.pod.delete(id: "e", execID: "")
        #expect(vm.fakeShares.held == 0 && rig.rootfs.count == 0)
        #expect(await rig.pod.isEmpty)
    }

    @Test func aDeleteThatFailsIsRetriedFromWhereItStopped() async throws {
        let rig = PodRig()
        defer { rig.cleanUp() }
        _ = try await rig.pod.create(try rig.bundle("d", binds: 1))
        _ = try await rig.pod.start(id: "d", execID: "")
        let vm = try #require(rig.vm)
        vm.guestAgent.exit("d", status: 0)
        _ = try await rig.pod.wait(id: "d", execID: "")
        vm.fakeShares.failUnmap(true)
        await #expect(throws: SkiffError.self) { _ = try await rig.pod.delete(id: "d", execID: "") }
        #expect(vm.guestAgent.calls.filter { $0 == "deleteContainer" }.count == 1)
        vm.fakeShares.failUnmap(false)
        _ = try await rig.pod.delete(id: "d", execID: "")
        #expect(vm.guestAgent.calls.filter { $0 == "deleteContainer" }.count == 1, "the retry resumed after the guest delete")
        #expect(vm.fakeShares.held == 0 && rig.rootfs.count == 0)
        await #expect(throws: SkiffError.notFound("task d not found")) { _ = try await rig.pod.delete(id: "d", execID: "") }
    }

    @Test func eventsFollowContainerdsOrderAndAnOOMKillComesBeforeTheExit() async throws {
        let rig = PodRig()
        defer { rig.cleanUp() }
        _ = try await rig.pod.create(try rig.bundle("e"))
        _ = try await rig.pod.start(id: "e", execID: "")
        let process: [String: Any] = ["args": ["true"], "cwd": "/"]
        try await rig.pod.exec(id: "e", execID: "x1", terminal: false, stdin: "", stdout: "", stderr: "",
                               spec: .with { $0.value = try! JSONSerialization.data(withJSONObject: process) })
        _ = try await rig.pod.start(id: "e", execID: "x1")
        let vm = try #require(rig.vm)
        vm.guestAgent.exit("e.exec.x1", status: 137, oomKilled: true)
        #expect(try await rig.pod.wait(id: "e", execID: "x1").status == 137)
        vm.guestAgent.exit("e", status: 3)
        #expect(try await rig.pod.wait(id: "e", execID: "").status == 3)
        _ = try await rig.pod.delete(id: "e", execID: "")
        #expect(rig.events.topics == ["/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exec-started",
                                      "/tasks/oom", "/tasks/exit", "/tasks/exit", "/tasks/delete"])
    }

    @Test func killAllAfterTheExitSucceedsAndAPlainKillIsNotFound() async throws {
        let rig = PodRig()
        defer { rig.cleanUp() }
        _ = try await rig.pod.create(try rig.bundle("k"))
        _ = try await rig.pod.start(id: "k", execID: "")
        rig.vm?.guestAgent.exit("k", status: 3)
        _ = try await rig.pod.wait(id: "k", execID: "")
        try await rig.pod.kill(id: "k", execID: "", signal: 9, all: true)
        await #expect(throws: SkiffError.self) { try await rig.pod.kill(id: "k", execID: "", signal: 9, all: false) }
        do { try await rig.pod.kill(id: "k", execID: "", signal: 9, all: false) } catch { #expect(error.code == .notFound) }
        do { try await rig.pod.kill(id: "k", execID: "", signal: 99, all: false) } catch { #expect(error.code == .invalidArgument) }
    }

    @Test func aBootTimeoutIsDeadlineExceededAndALostAgentUnavailable() async throws {
        for (cause, code) in [(GuestManagerError.bootTimedOut(after: .seconds(1), console: ""), SkiffError.Code.deadlineExceeded),
                              (GuestManagerError.disconnected("closed"), .unavailable)] {
            let rig = PodRig { vm in
                vm.state.withLock { $0.failStart = VMControllerError.startFailed("boot", state: .invalid, cause: cause) }
            }
            defer { rig.cleanUp() }
            let request = try rig.bundle("t")
            #expect(await errorCode { _ = try await rig.pod.create(request) } == code)
            #expect(rig.vm?.state.withLock { $0.terminated } == 1)
        }
    }

    @Test func badIdsAndUnknownTasksGetTheirCodes() async throws {
        let rig = PodRig()
        defer { rig.cleanUp() }
        for bad in ["", "-x", "a b", "$(touch x)", "../x", String(repeating: "a", count: 129)] {
            var request = try rig.bundle("good")
            request.id = bad
            #expect(await errorCode { _ = try await rig.pod.create(request) } == .invalidArgument, "\(bad)")
        }
        #expect(await errorCode { _ = try await rig.pod.start(id: "nope", execID: "") } == .notFound)
        let dup = try rig.bundle("dup")
        _ = try await rig.pod.create(dup)
        #expect(await errorCode { _ = try await rig.pod.create(dup) } == .alreadyExists)
    }
}
