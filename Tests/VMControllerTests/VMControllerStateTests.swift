import Foundation
import Testing
@testable import VMController
import VMManager

/// Every row of the VM controller's state table, and the cleanup chain's failures, over fakes.
@Suite(.timeLimit(.minutes(1))) struct VMControllerStateTests {
    @Test func createVMMovesNotCreatedToCreatedAndWritesTheHandlesFile() async throws {
        let rig = try Rig()
        defer { rig.removeRoot() }
        #expect(await rig.controller.state == .notCreated)
        try await rig.controller.createVM(rig.document)
        #expect(await rig.controller.state == .created)
        let handles = try HandlesFile.read(from: rig.controller.handlesPath)
        #expect(handles.processName == "skiff-vm1")
        await #expect(throws: VMControllerError.wrongState(operation: "CreateVM", state: .created)) {
            try await rig.controller.createVM(rig.document)
        }
    }

    @Test func startVMMovesCreatedToRunningAndASecondStartIsANoOp() async throws {
        let rig = try await Rig().running()
        defer { rig.removeRoot() }
        #expect(await rig.controller.state == .running)
        try await rig.controller.startVM()
        #expect(rig.host.calls.start == 1)
        #expect(await rig.controller.startTime != nil)
    }

    @Test func startVMBeforeCreateIsRefused() async throws {
        let rig = try Rig()
        defer { rig.removeRoot() }
        await #expect(throws: VMControllerError.wrongState(operation: "StartVM", state: .notCreated)) {
            try await rig.controller.startVM()
        }
    }

    @Test func startVMFailingBeforeTheProcessStartsLeavesCreated() async throws {
        let rig = try Rig()
        defer { rig.removeRoot() }
        rig.host.failStart = true
        try await rig.controller.createVM(rig.document)
        await #expect(throws: VMControllerError.self) { try await rig.controller.startVM() }
        #expect(await rig.controller.state == .created)
    }

    @Test func startVMFailingAfterTheProcessStartedLeavesInvalidAndTerminateRecovers() async throws {
        let rig = try Rig()
        defer { rig.removeRoot() }
        rig.connector.fail = true
        try await rig.controller.createVM(rig.document)
        await #expect(throws: VMControllerError.self) { try await rig.controller.startVM() }
        #expect(await rig.controller.state == .invalid)
        try await rig.controller.terminateVM()
        #expect(await rig.controller.state == .terminated)
        #expect(rig.host.calls.terminate == 1)
    }

    @Test func theGuestIsSyncedWithTheHostOnceItAnswersAndAFailedSyncFailsTheStart() async throws {
        let rig = try Rig()
        defer { rig.removeRoot() }
        try await rig.controller.createVM(rig.document)
        try await rig.controller.startVM()
        #expect(rig.connector.guest.syncs == 1)
        try await rig.controller.terminateVM()

        let failing = try Rig()
        defer { failing.removeRoot() }
        failing.connector.guest.failSync = true
        try await failing.controller.createVM(failing.document)
        await #expect(throws: VMControllerError.self, "a copy of a template must not run with the template's clock and random state") {
            try await failing.controller.startVM()
        }
        #expect(await failing.controller.state == .invalid)
        try await failing.controller.terminateVM()
        #expect(await failing.controller.state == .terminated)
    }

    @Test func terminateFromCreatedReachesTerminatedAndRemovesTheStateDirectory() async throws {
        let rig = try Rig()
        defer { rig.removeRoot() }
        try await rig.controller.createVM(rig.document)
        try await rig.controller.terminateVM()
        #expect(await rig.controller.state == .terminated)
        #expect(!FileManager.default.fileExists(atPath: rig.controller.stateDirectory))
    }

    @Test func terminateFromCreatedWithAFailingReleaseLeavesInvalid() async throws {
        let rig = try Rig()
        defer { rig.removeRoot() }
        try await rig.controller.createVM(rig.document)
        // A stray file in the share root makes removing it fail.
        #expect(FileManager.default.createFile(atPath: rig.document.sharedDirectory!.hostPath + "/stray", contents: Data()))
        await #expect(throws: VMControllerError.self) { try await rig.controller.terminateVM() }
        #expect(await rig.controller.state == .invalid)
        try FileManager.default.removeItem(atPath: rig.document.sharedDirectory!.hostPath + "/stray")
        try await rig.controller.terminateVM()
        #expect(await rig.controller.state == .terminated)
    }

    @Test func theVMExitingByItselfMovesRunningToTerminatedWithTheExitRecorded() async throws {
        let rig = try await Rig().running()
        defer { rig.removeRoot() }
        rig.host.exit(.exited(0))
        let status = await rig.controller.wait()
        #expect(status == .exited(0))
        #expect(await rig.controller.state == .terminated)
        #expect(rig.connector.guest.closes == 1)
        #expect(!FileManager.default.fileExists(atPath: rig.controller.handlesPath))
    }

    @Test func terminateFromRunningRunsTheWholeChain() async throws {
        let rig = try await Rig().running()
        defer { rig.removeRoot() }
        try await rig.controller.terminateVM()
        #expect(await rig.controller.state == .terminated)
        #expect(rig.host.calls.terminate == 1)
        #expect(rig.host.calls.close == 1)
        #expect(rig.connector.guest.closes == 1)
        #expect(await rig.controller.exitStatus == .signaled(9))
        #expect(!FileManager.default.fileExists(atPath: rig.controller.stateDirectory))
    }

    @Test func aFailingKillIsLoggedAndTheChainGoesOn() async throws {
        let rig = try await Rig().running()
        defer { rig.removeRoot() }
        rig.host.failTerminate = true
        try await rig.controller.terminateVM()
        #expect(await rig.controller.state == .terminated)
        #expect(rig.connector.guest.closes == 1)
    }

    @Test func aFailingGuestCloseIsLoggedAndTheChainGoesOn() async throws {
        let rig = try await Rig().running()
        defer { rig.removeRoot() }
        rig.connector.guest.failClose = true
        try await rig.controller.terminateVM()
        #expect(await rig.controller.state == .terminated)
        #expect(!FileManager.default.fileExists(atPath: rig.controller.stateDirectory))
    }

    @Test func aFailingReleaseLeavesInvalidAndALaterTerminateRecovers() async throws {
        let rig = try await Rig().running()
        defer { rig.removeRoot() }
        let plan9 = try #require(await rig.controller.plan9)
        let dir = rig.root + "/data"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let share = try await plan9.reserve(hostPath: dir, readOnly: false)
        _ = try await plan9.mapToGuest(share)
        rig.mounter.failUnbind = true
        await #expect(throws: VMControllerError.self) { try await rig.controller.terminateVM() }
        #expect(await rig.controller.state == .invalid)
        // The handles file still lists the share's bind mount (beside the share root's own,
        // which QEMU's namespace takes binds through) for a cleanup from the file alone.
        let shareRoot = await plan9.shareRoot
        #expect(try HandlesFile.read(from: rig.controller.handlesPath).hostMounts.filter { $0.hasPrefix(shareRoot + "/") }.count == 1)
        rig.mounter.failUnbind = false
        try await rig.controller.terminateVM()
        #expect(await rig.controller.state == .terminated)
        #expect(rig.mounter.bound.isEmpty)
    }

    @Test func terminateOnNotCreatedAndOnTerminatedIsANoOp() async throws {
        let rig = try Rig()
        defer { rig.removeRoot() }
        try await rig.controller.terminateVM()
        #expect(await rig.controller.state == .notCreated)
        try await rig.controller.createVM(rig.document)
        try await rig.controller.startVM()
        try await rig.controller.terminateVM()
        try await rig.controller.terminateVM()
        #expect(rig.host.calls.terminate == 1)
        await #expect(throws: VMControllerError.self) { try await rig.controller.startVM() }
    }

    @Test func concurrentStartsBootOnceAndConcurrentTerminatesKillOnce() async throws {
        let rig = try Rig()
        defer { rig.removeRoot() }
        rig.host.startDelay = .milliseconds(50)
        try await rig.controller.createVM(rig.document)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 { group.addTask { try await rig.controller.startVM() } }
            try await group.waitForAll()
        }
        #expect(rig.host.calls.start == 1)
        #expect(await rig.controller.state == .running)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 { group.addTask { try await rig.controller.terminateVM() } }
            try await group.waitForAll()
        }
        #expect(rig.host.calls.terminate == 1)
        #expect(await rig.controller.state == .terminated)
    }

    @Test func operationsNeedARunningVM() async throws {
        let rig = try Rig()
        defer { rig.removeRoot() }
        try await rig.controller.createVM(rig.document)
        await #expect(throws: VMControllerError.wrongState(operation: "Stats", state: .created)) { _ = try await rig.controller.stats() }
        await #expect(throws: VMControllerError.wrongState(operation: "DumpStacks", state: .created)) { _ = try await rig.controller.dumpStacks() }
        try await rig.controller.startVM()
        #expect(try await rig.controller.dumpStacks() == "fake stacks")
        #expect(try await rig.controller.stats().host.residentBytes == 100 << 20)
        #expect(try await rig.controller.execIntoHost(["uname", "-r"]).stdout == Array("uname -r".utf8))
        try await rig.controller.terminateVM()
    }

    @Test func vcpuUpdateGrowsOnlyWithinTheMaximumAndNeedsTheGuestToOnlineThem() async throws {
        let rig = try Rig()
        defer { rig.removeRoot() }
        try await rig.controller.createVM(rig.document)
        await #expect(throws: VMControllerError.wrongState(operation: "Update", state: .created)) { try await rig.controller.update(vcpus: 2) }
        try await rig.controller.startVM()
        try await rig.controller.update(vcpus: 3)
        #expect(rig.host.vcpus == 3)
        // Shrinking and going past the maximum are refused as bad arguments.
        await #expect(throws: VMControllerError.self) { try await rig.controller.update(vcpus: 2) }
        await #expect(throws: VMControllerError.self) { try await rig.controller.update(vcpus: 5) }
        do {
            try await rig.controller.update(vcpus: 5)
        } catch let error {
            guard case .invalidArgument = error else { Issue.record("expected invalidArgument, got \(error)"); return }
        }
        // Plugged but not online in the guest is a failure, not a silent success.
        rig.connector.guest.lock.withLock { rig.connector.guest.onlineLimit = 3 }
        await #expect(throws: VMControllerError.self) { try await rig.controller.update(vcpus: 4) }
        #expect(await rig.controller.state == .running)
        try await rig.controller.terminateVM()
    }
}
