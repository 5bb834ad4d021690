import Foundation
import SkiffSupport
import Synchronization
import Testing
@testable import VMController

/// The vPCI controller's host and guest, in memory: each call recorded, any failing on demand.
final class FakeVPCI: RecordedCalls, VPCIHost, VPCIGuest, @unchecked Sendable {
    func addPCIDevice(id: String, driver: String, properties: [String: JSONValue]) async throws -> String {
        try call("add \(id) \(driver)")
        return "0000:00:0\(id.last ?? "0").0"
    }
    func removePCIDevice(id: String) async throws { try call("remove \(id)") }
    func waitPCIDevice(rootPort: String, driverOverride: String, timeout: Duration) async throws -> GuestPCIDevice {
        try call("wait \(rootPort)")
        return GuestPCIDevice(address: "0000:01:00.0", vendor: 0x1234, device: 0x11e8, driver: "edu")
    }
}

@Suite struct VPCIControllerTests {
    private let edu = VPCIController.Device(identity: "edu-1", driver: "edu")

    private func make(handles: HandlesFile? = nil) async -> (VPCIController, FakeVPCI) {
        let fake = FakeVPCI()
        let vpci = VPCIController(host: fake, handles: handles)
        await vpci.attach(guest: fake)
        return (vpci, fake)
    }

    private func state(_ vpci: VPCIController, _ id: VPCIController.DeviceID) async -> VPCIController.State? {
        await vpci.assignments.first { $0.id == id }?.state
    }

    @Test func aDeviceIsReservedAddedSeenInTheGuestAndRemoved() async throws {
        let dir = "/tmp/skiff-vpci-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let handles = try HandlesFile(path: dir + "/handles.json", initial: VMHandles(vmID: "v", processName: "skiff-v", pidFile: dir + "/pid"))
        let (vpci, fake) = await make(handles: handles)
        let id = try await vpci.reserve(edu)
        #expect(fake.calls.isEmpty, "reserve does no I/O")
        #expect(await state(vpci, id) == .reserved)
        let seen = try await vpci.addToVM(id)
        #expect(seen == GuestPCIDevice(address: "0000:01:00.0", vendor: 0x1234, device: 0x11e8, driver: "edu"))
        #expect(fake.calls == ["add vpci0 edu", "wait 0000:00:00.0"], "the guest waits behind the port the host chose")
        #expect(await state(vpci, id) == .ready)
        #expect(try HandlesFile.read(from: handles.path).pciDevices == ["edu-1"], "recorded")
        #expect(try await vpci.addToVM(id) == seen, "adding a Ready device again is a no-op")
        #expect(fake.calls.count == 2)
        try await vpci.removeFromVM(id)
        #expect(fake.calls.last == "remove vpci0")
        #expect(await vpci.assignments.isEmpty)
        #expect(try HandlesFile.read(from: handles.path).pciDevices == [])
    }

    @Test func theSameDeviceSharesItsIdAndIsRemovedAtTheLastReference() async throws {
        let (vpci, fake) = await make()
        let a = try await vpci.reserve(edu)
        let b = try await vpci.reserve(edu)
        #expect(a == b)
        _ = try await vpci.addToVM(a)
        _ = try await vpci.addToVM(b)
        #expect(fake.calls.filter { $0.hasPrefix("add") }.count == 1, "two containers, one device in the VM")
        try await vpci.removeFromVM(a)
        #expect(await state(vpci, a) == .ready)
        #expect(!fake.calls.contains { $0.hasPrefix("remove") })
        try await vpci.removeFromVM(b)
        #expect(fake.calls.last == "remove vpci0")
        #expect(await vpci.assignments.isEmpty)
        await #expect(throws: VMControllerError.self, "the same identity with another driver") {
            _ = try await vpci.reserve(.init(identity: "x", driver: "edu"))
            _ = try await vpci.reserve(.init(identity: "x", driver: "pci-testdev"))
        }
    }

    @Test func aHostAddFailureIsRemovedAndNeedsNoHostRemoval() async throws {
        let (vpci, fake) = await make()
        fake.fail("add")
        let id = try await vpci.reserve(edu)
        await #expect(throws: VMControllerError.self) { _ = try await vpci.addToVM(id) }
        #expect(await state(vpci, id) == .removed)
        await #expect(throws: VMControllerError.self, "a Removed device is not added again") { _ = try await vpci.addToVM(id) }
        try await vpci.removeFromVM(id)
        #expect(!fake.calls.contains { $0.hasPrefix("remove") })
        #expect(await vpci.assignments.isEmpty)
        // Reserved again after its removal: a new id, and it works.
        fake.fail("add", false)
        let again = try await vpci.reserve(edu)
        #expect(again != id)
        _ = try await vpci.addToVM(again)
        #expect(await state(vpci, again) == .ready)
    }

    @Test func aGuestWaitFailureIsAssignedInvalidAndRemovalStillUnplugsIt() async throws {
        let (vpci, fake) = await make()
        fake.fail("wait")
        let id = try await vpci.reserve(edu)
        await #expect(throws: VMControllerError.self) { _ = try await vpci.addToVM(id) }
        #expect(await state(vpci, id) == .assignedInvalid)
        // A retry waits in the guest again, without a second host add.
        fake.fail("wait", false)
        _ = try await vpci.addToVM(id)
        #expect(await state(vpci, id) == .ready)
        #expect(fake.calls.filter { $0.hasPrefix("add") }.count == 1 && fake.calls.filter { $0.hasPrefix("wait") }.count == 2)
        fake.fail("wait")
        let other = try await vpci.reserve(.init(identity: "testdev", driver: "pci-testdev"))
        await #expect(throws: VMControllerError.self) { _ = try await vpci.addToVM(other) }
        try await vpci.removeFromVM(other)
        #expect(fake.calls.last == "remove vpci1", "an AssignedInvalid device is unplugged on the host")
    }

    @Test func aHostRemovalFailureKeepsTheDeviceForARetry() async throws {
        let (vpci, fake) = await make()
        let id = try await vpci.reserve(edu)
        _ = try await vpci.addToVM(id)
        fake.fail("remove")
        await #expect(throws: VMControllerError.self) { try await vpci.removeFromVM(id) }
        #expect(await state(vpci, id) == .ready)
        fake.fail("remove", false)
        try await vpci.removeFromVM(id)
        #expect(fake.calls.filter { $0.hasPrefix("remove") }.count == 2)
        #expect(await vpci.assignments.isEmpty)
    }

    @Test func addingNeedsAGuestAndReleaseAllForgetsEverything() async throws {
        let vpci = VPCIController(host: FakeVPCI(), handles: nil)
        let id = try await vpci.reserve(edu)
        await #expect(throws: VMControllerError.self) { _ = try await vpci.addToVM(id) }
        #expect(await state(vpci, id) == .reserved)
        await vpci.releaseAll()
        #expect(await vpci.assignments.isEmpty)
    }
}
