import ContainerdAPI
import Foundation
@testable import PodController
import SkiffSupport
import Testing

/// One process's state machine: the exit is recorded once and releases every Wait, early or
/// late; the start event precedes the exit; Delete is refused while the process lives.
@Suite(.timeLimit(.minutes(1))) struct ProcessControllerTests {
    private func process(_ events: RecordedEvents, kind: ProcessController.Kind = .exec(id: "e1")) -> ProcessController {
        ProcessController(containerID: "c1", kind: kind, agentID: "c1.exec.e1", terminal: true,
                          stdin: "/fifo/in", stdout: "/fifo/out", stderr: "", events: events)
    }

    @Test func waitsBeforeTheExitAreReleasedByItAndTheFirstExitIsTheOneThatCounts() async throws {
        let events = RecordedEvents()
        let p = process(events)
        async let first = p.wait()
        async let second = p.wait()
        try await Task.sleep(for: .milliseconds(20))
        await p.exited(status: 7, at: Date(timeIntervalSince1970: 100))
        await p.exited(status: 9, at: Date())
        let (a, b) = try await (first, second)
        #expect(a.status == 7 && b.status == 7 && a.at == Date(timeIntervalSince1970: 100))
        #expect(await p.status == .stopped)
        #expect(events.topics == ["/tasks/exit"], "one exit, one event")
    }

    @Test func aWaitAfterTheExitReturnsAtOnce() async throws {
        let p = process(RecordedEvents())
        await p.exited(status: 0, at: Date())
        #expect(try await p.wait().status == 0)
    }

    @Test func startPublishesBeforeTheExitItWatches() async throws {
        let events = RecordedEvents()
        let guest = FakeGuest()
        let p = process(events)
        guest.exit("c1.exec.e1", status: 0)  // the process ends at once
        let pid = try await p.start(guest: guest) { () async throws(SkiffError) in (42, FifoIO.unconnected()) }
        #expect(pid == 42)
        _ = try await p.wait()
        #expect(events.topics == ["/tasks/exec-started", "/tasks/exit"])
        #expect(guest.calls.contains("deleteProcess"), "the agent forgets the process after its exit")
    }

    @Test func startTwiceAndDeleteWhileRunningAreRefused() async throws {
        let guest = FakeGuest()
        let p = process(RecordedEvents())
        _ = try await p.start(guest: guest) { () async throws(SkiffError) in (42, FifoIO.unconnected()) }
        await #expect(throws: SkiffError.self) { _ = try await p.start(guest: guest) { () async throws(SkiffError) in nil } }
        do { _ = try await p.delete(); Issue.record("deleted a running process") } catch { #expect(error.code == .failedPrecondition) }
        guest.exit("c1.exec.e1", status: 1)
        _ = try await p.wait()
        #expect(try await p.delete().status == 1)
        do { _ = try await p.delete(); Issue.record("deleted twice") } catch { #expect(error.code == .notFound) }
    }

    @Test func pauseNeedsALiveProcessAndStateCarriesTheExecIdStdioAndExit() async throws {
        let p = process(RecordedEvents())
        await p.setPaused(true)
        #expect(await p.status == .created, "nothing to pause before Start")
        await p.exited(status: 137, at: Date(timeIntervalSince1970: 5))
        let state = await p.stateResponse(bundle: "/b")
        #expect(state.id == "e1" && state.execID == "e1" && state.bundle == "/b")
        #expect(state.status == .stopped && state.exitStatus == 137 && state.exitedAt.seconds == 5)
        #expect(state.stdin == "/fifo/in" && state.stdout == "/fifo/out" && state.stderr == "" && state.terminal)
    }
}
