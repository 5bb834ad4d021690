import Foundation
import Synchronization
import Testing
@testable import VMController

/// Calls to a sub-controller's fake host and guest, in order; a call whose first word is
/// marked failing throws.
class RecordedCalls: @unchecked Sendable {
    let log = Mutex<[String]>([])
    let failing = Mutex<Set<String>>([])
    var calls: [String] { log.withLock { $0 } }
    func fail(_ call: String, _ on: Bool = true) { failing.withLock { if on { $0.insert(call) } else { $0.remove(call) } } }

    func call(_ what: String) throws {
        log.withLock { $0.append(what) }
        if failing.withLock({ $0.contains(String(what.split(separator: " ")[0])) }) { throw VMControllerError.operationFailed("injected \(what)") }
    }
}

/// The SCSI controller's host and guest, in memory: each call recorded, any failing on demand.
final class FakeSCSI: RecordedCalls, SCSIHost, SCSIGuest, @unchecked Sendable {
    func attachDisk(id: String, path: String, readOnly: Bool, controller: Int, lun: Int) async throws { try call("attach \(id) \(readOnly ? "ro" : "rw")") }
    func detachDisk(id: String) async throws { try call("detach \(id)") }
    func mountSCSIDisk(controller: Int, lun: Int, path: String, fstype: String, options: [String], readOnly: Bool) async throws -> GuestBlockDevice {
        try call(path.isEmpty ? "find \(controller)-\(lun)" : "mount \(controller)-\(lun) \(fstype) \(path)")
        return GuestBlockDevice(path: "/dev/sd\(Character(UnicodeScalar(UInt8(97 + lun))))", major: 8, minor: UInt32(16 * lun))
    }
    func unmount(target: String) async throws { try call("unmount \(target)") }
    func ejectSCSIDisk(controller: Int, lun: Int) async throws { try call("eject \(controller)-\(lun)") }
}

@Suite struct SCSIControllerTests {
    private let ext4 = SCSIController.MountConfig(fstype: "ext4")

    private func make(controllers: Int = 1, luns: Int = 4) async -> (SCSIController, FakeSCSI) {
        let fake = FakeSCSI()
        let scsi = SCSIController(controllers: controllers, lunsPerController: luns, host: fake, handles: nil)
        await scsi.attach(guest: fake)
        return (scsi, fake)
    }

    @Test func aDiskGoesThroughEveryStateAndIsGoneAtTheEnd() async throws {
        let (scsi, fake) = await make()
        let id = try await scsi.reserve(hostPath: "/img/a.ext4", readOnly: false, mount: ext4)
        #expect(fake.calls.isEmpty, "reserve does no I/O")
        #expect(await scsi.states(id)?.disk == .reserved)
        let path = try await scsi.mapToGuest(id)
        #expect(path == "/run/skiff/disks/0")
        let mapped = await scsi.states(id)
        #expect(mapped?.disk == .attached && mapped?.mount == .mounted)
        #expect(try await scsi.mapToGuest(id) == path, "mapped again: its path, no I/O")
        #expect(fake.calls == ["attach scsi0-0 rw", "mount 0-0 ext4 /run/skiff/disks/0"])
        try await scsi.unmapFromGuest(id)
        #expect(fake.calls.suffix(3) == ["unmount /run/skiff/disks/0", "eject 0-0", "detach scsi0-0"])
        #expect(await scsi.count == 0)
    }

    @Test func theSameImageSharesOneSlotAndAnotherModeIsRefused() async throws {
        let (scsi, fake) = await make()
        let a = try await scsi.reserve(hostPath: "/img/layer.erofs", readOnly: true, mount: .init(fstype: "erofs"))
        let b = try await scsi.reserve(hostPath: "/img/layer.erofs", readOnly: true, mount: .init(fstype: "erofs"))
        #expect(a == b)
        await #expect(throws: VMControllerError.self) { try await scsi.reserve(hostPath: "/img/layer.erofs", readOnly: false, mount: .init(fstype: "erofs")) }
        _ = try await scsi.mapToGuest(a)
        _ = try await scsi.mapToGuest(b)
        try await scsi.unmapFromGuest(a)
        #expect(!fake.calls.contains { $0.hasPrefix("detach") }, "one reference is left")
        try await scsi.unmapFromGuest(b)
        #expect(fake.calls.filter { $0.hasPrefix("attach") }.count == 1 && fake.calls.last == "detach scsi0-0")
    }

    @Test func slotsRunOutWithAClearErrorAndFreeOnesAreReused() async throws {
        let (scsi, _) = await make(controllers: 1, luns: 2)
        let a = try await scsi.reserve(hostPath: "/a", readOnly: false, mount: ext4)
        _ = try await scsi.reserve(hostPath: "/b", readOnly: false, mount: ext4)
        do {
            _ = try await scsi.reserve(hostPath: "/c", readOnly: false, mount: ext4)
            Issue.record("a third disk got a slot of two")
        } catch { #expect("\(error)".contains("slots are taken")) }
        try await scsi.unmapFromGuest(a)
        #expect(try await scsi.reserve(hostPath: "/c", readOnly: false, mount: ext4).value == 2)
        await #expect(throws: VMControllerError.self) { try await scsi.reserve(hostPath: "relative", readOnly: false, mount: ext4) }
    }

    @Test func anAttachFailureIsDetachedAndUnmapDropsTheReservationWithoutIO() async throws {
        let (scsi, fake) = await make()
        fake.fail("attach")
        let id = try await scsi.reserve(hostPath: "/a", readOnly: false, mount: ext4)
        await #expect(throws: VMControllerError.self) { _ = try await scsi.mapToGuest(id) }
        #expect(await scsi.states(id)?.disk == .detached)
        try await scsi.unmapFromGuest(id)
        #expect(fake.calls == ["attach scsi0-0 rw"])
        #expect(await scsi.count == 0)
    }

    @Test func aMountFailureStaysAttachedAndUnmapStillEjectsAndDetaches() async throws {
        let (scsi, fake) = await make()
        fake.fail("mount")
        let id = try await scsi.reserve(hostPath: "/a", readOnly: false, mount: ext4)
        await #expect(throws: VMControllerError.self) { _ = try await scsi.mapToGuest(id) }
        let attached = await scsi.states(id)
        #expect(attached?.disk == .attached && attached?.mount == .reserved)
        try await scsi.unmapFromGuest(id)
        #expect(fake.calls.suffix(2) == ["eject 0-0", "detach scsi0-0"])
        #expect(!fake.calls.contains { $0.hasPrefix("unmount") })
    }

    @Test func anEjectOrDetachFailureIsRetriedFromWhereItStopped() async throws {
        let (scsi, fake) = await make()
        let id = try await scsi.reserve(hostPath: "/a", readOnly: false, mount: ext4)
        _ = try await scsi.mapToGuest(id)
        fake.fail("eject")
        await #expect(throws: VMControllerError.self) { try await scsi.unmapFromGuest(id) }
        let halfway = await scsi.states(id)
        #expect(halfway?.disk == .attached && halfway?.mount == .unmounted)
        fake.fail("eject", false)
        fake.fail("detach")
        await #expect(throws: VMControllerError.self) { try await scsi.unmapFromGuest(id) }
        #expect(await scsi.states(id)?.disk == .ejected)
        fake.fail("detach", false)
        try await scsi.unmapFromGuest(id)
        #expect(fake.calls.filter { $0.hasPrefix("unmount") }.count == 1, "unmounted once")
        #expect(fake.calls.filter { $0.hasPrefix("eject") }.count == 2 && fake.calls.filter { $0.hasPrefix("detach") }.count == 2)
        #expect(await scsi.count == 0)
    }

    @Test func mappingNeedsAGuest() async throws {
        let scsi = SCSIController(controllers: 1, host: FakeSCSI(), handles: nil)
        let id = try await scsi.reserve(hostPath: "/a", readOnly: false, mount: ext4)
        await #expect(throws: VMControllerError.self) { _ = try await scsi.mapToGuest(id) }
        #expect(await scsi.states(id)?.disk == .reserved)
    }

    @Test func aRawDiskIsFoundButNeverMountedAndGivesItsGuestDevice() async throws {
        let (scsi, fake) = await make()
        let id = try await scsi.reserve(hostPath: "/dev/loop3", readOnly: false, mount: .raw)
        let mapped = try await scsi.mapDeviceToGuest(id)
        #expect(mapped.device == GuestBlockDevice(path: "/dev/sda", major: 8, minor: 0))
        #expect(mapped.mountPath == "/dev/sda", "a raw disk's path is its device")
        #expect(fake.calls == ["attach scsi0-0 rw", "find 0-0"])
        #expect(try await scsi.mapToGuest(id) == "/dev/sda", "mapped once")
        #expect(fake.calls.count == 2)
        try await scsi.unmapFromGuest(id)
        #expect(fake.calls.suffix(2) == ["eject 0-0", "detach scsi0-0"], "nothing to unmount")
        #expect(await scsi.count == 0)
    }

    @Test func aRawDiskAndAMountOfTheSameImageDoNotShare() async throws {
        let (scsi, _) = await make()
        _ = try await scsi.reserve(hostPath: "/img/a.ext4", readOnly: false, mount: ext4)
        await #expect(throws: VMControllerError.self) { _ = try await scsi.reserve(hostPath: "/img/a.ext4", readOnly: false, mount: .raw) }
    }
}
