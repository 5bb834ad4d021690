import Foundation
import Testing
@testable import ShimService

/// The record of one process as containerd sees it: its exit is recorded once, and every
/// Wait call, early or late, is released by it.
@Suite struct ProcessRecordTests {
    private func record() -> ProcessRecord {
        ProcessRecord(agentID: "c1.exec.e1", terminal: true, stdin: "/fifo/in", stdout: "/fifo/out", stderr: "")
    }

    @Test func waitersBeforeTheExitAreReleasedByItAndTheFirstExitIsTheOneThatCounts() async {
        let holder = Holder(record())
        async let first: Void = holder.waitForExit()
        async let second: Void = holder.waitForExit()
        while await holder.queued < 2 { await Task.yield() }
        #expect(await holder.exit(7, at: Date(timeIntervalSince1970: 100)) == 2)
        #expect(await holder.exit(9, at: Date()) == 0, "a second exit releases nobody and changes nothing")
        _ = await (first, second)
        let process = await holder.process
        #expect(process.status == .stopped)
        #expect(process.exitStatus == 7)
        #expect(process.exitedAt == Date(timeIntervalSince1970: 100))
    }

    @Test func aWaitAfterTheExitIsReleasedAtOnce() async {
        let holder = Holder(record())
        #expect(await holder.exit(0, at: Date()) == 0)
        await holder.waitForExit()
        #expect(await holder.process.status == .stopped)
    }

    @Test func closingStdinBeforeStartIsRememberedAndPauseNeedsALiveProcess() {
        var process = record()
        process.closeStdin()
        #expect(process.stdinClosed)
        process.paused(true)
        #expect(process.status == .created, "nothing to pause before Start")
        #expect(!process.isLive)
    }

    @Test func stateCarriesTheExecIdStdioAndExit() {
        var process = record()
        _ = process.exited(status: 137, at: Date(timeIntervalSince1970: 5))
        let state = process.stateResponse(id: "e1", bundle: "/b", execID: "e1")
        #expect(state.id == "e1" && state.execID == "e1" && state.bundle == "/b")
        #expect(state.status == .stopped && state.exitStatus == 137 && state.exitedAt.seconds == 5)
        #expect(state.stdin == "/fifo/in" && state.stdout == "/fifo/out" && state.stderr == "" && state.terminal)
    }
}

/// Holds a record as the pod does: inside an actor.
private actor Holder {
    var process: ProcessRecord
    private(set) var queued = 0
    init(_ process: ProcessRecord) { self.process = process }

    func waitForExit() async {
        await withCheckedContinuation { continuation in
            process.addExitWaiter(continuation)
            queued += 1
        }
    }

    /// Records an exit and releases the waiters it hands back; how many there were.
    func exit(_ status: UInt32, at: Date) -> Int {
        let waiters = process.exited(status: status, at: at)
        waiters.forEach { $0.resume() }
        return waiters.count
    }
}
