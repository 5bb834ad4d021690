import Foundation
import Testing
@testable import VMController

@Suite struct Plan9ControllerTests {
    private func make() throws -> (Plan9Controller, FakeMounter, FakeGuest, String) {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("skiff-p9-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: root + "/data", withIntermediateDirectories: true)
        let mounter = FakeMounter()
        let guest = FakeGuest()
        let plan9 = Plan9Controller(shareRoot: root + "/share", tag: "skiffshare", mounter: mounter, handles: nil)
        return (plan9, mounter, guest, root)
    }

    @Test func identicalReservationsShareOneEntryAndTheLastUnmapReleasesIt() async throws {
        let (plan9, mounter, guest, root) = try make()
        defer { try? FileManager.default.removeItem(atPath: root) }
        await plan9.attach(guest: guest)
        let a = try await plan9.reserve(hostPath: root + "/data", readOnly: true)
        let b = try await plan9.reserve(hostPath: root + "/data", readOnly: true)
        let c = try await plan9.reserve(hostPath: root + "/data", readOnly: false)
        #expect(a == b)
        #expect(a != c)
        let path = try await plan9.mapToGuest(a)
        #expect(try await plan9.mapToGuest(b) == path)
        #expect(mounter.bound.count == 1)
        #expect(mounter.bound.values.first?.readOnly == true)
        // The 9p export is mounted once; the share is bind-mounted read-only in the guest too.
        #expect(guest.mounts.filter { $0.options.contains("trans=virtio") }.count == 1)
        #expect(guest.mounts.last?.options == ["bind", "ro"])
        try await plan9.unmapFromGuest(a)
        #expect(mounter.bound.count == 1)
        try await plan9.unmapFromGuest(b)
        #expect(mounter.bound.isEmpty)
        #expect(guest.unmounts == [path])
    }

    @Test func aFailedGuestMountIsResumedByTheNextMap() async throws {
        let (plan9, mounter, guest, root) = try make()
        defer { try? FileManager.default.removeItem(atPath: root) }
        await plan9.attach(guest: guest)
        let id = try await plan9.reserve(hostPath: root + "/data", readOnly: false)
        guest.failMount = true
        await #expect(throws: VMControllerError.self) { _ = try await plan9.mapToGuest(id) }
        #expect(mounter.bound.count == 1)  // the host half stays done
        guest.failMount = false
        _ = try await plan9.mapToGuest(id)
        #expect(mounter.bound.count == 1)
        try await plan9.unmapFromGuest(id)
        #expect(await plan9.count == 0)
    }

    @Test func aFailedGuestUnmountKeepsTheShareForARetry() async throws {
        let (plan9, mounter, guest, root) = try make()
        defer { try? FileManager.default.removeItem(atPath: root) }
        await plan9.attach(guest: guest)
        let id = try await plan9.reserve(hostPath: root + "/data", readOnly: false)
        _ = try await plan9.mapToGuest(id)
        guest.failUnmount = true
        await #expect(throws: VMControllerError.self) { try await plan9.unmapFromGuest(id) }
        #expect(mounter.bound.count == 1)
        guest.failUnmount = false
        try await plan9.unmapFromGuest(id)
        #expect(mounter.bound.isEmpty)
    }

    @Test func badPathsAreRefused() async throws {
        let (plan9, _, _, root) = try make()
        defer { try? FileManager.default.removeItem(atPath: root) }
        await #expect(throws: VMControllerError.self) { _ = try await plan9.reserve(hostPath: "relative", readOnly: true) }
        await #expect(throws: VMControllerError.self) { _ = try await plan9.reserve(hostPath: root + "/missing", readOnly: true) }
    }
}
