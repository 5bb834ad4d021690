import ContainerdAPI
import Foundation
import Glibc
@testable import PodController
import SkiffSupport
import Synchronization
import Testing
import VMController

/// The VM's disks, in memory: what was reserved (path, mode, mount), mapping failing on demand.
final class FakeDisks: ContainerDisks, Sendable {
    struct Reservation: Equatable {
        var path: String
        var readOnly: Bool
        var mount: SCSIController.MountConfig
    }
    struct State {
        var held: [Int: Reservation] = [:]
        var next = 0
        var failMap = false
    }
    let state = Mutex(State())
    var held: [Reservation] { state.withLock { $0.held.sorted { $0.key < $1.key }.map(\.value) } }
    func failMap(_ on: Bool) { state.withLock { $0.failMap = on } }

    func reserve(hostPath: String, readOnly: Bool, mount: SCSIController.MountConfig) async throws -> SCSIController.DiskID {
        state.withLock { state in
            state.next += 1
            state.held[state.next] = Reservation(path: hostPath, readOnly: readOnly, mount: mount)
            return SCSIController.DiskID(value: state.next)
        }
    }

    func mapDeviceToGuest(_ id: SCSIController.DiskID) async throws -> (mountPath: String, device: GuestBlockDevice) {
        try state.withLock { state in
            guard let disk = state.held[id.value] else { throw Injected(what: "no disk \(id.value)") }
            if state.failMap { throw Injected(what: "map disk") }
            let device = GuestBlockDevice(path: "/dev/sd\(id.value)", major: 8, minor: UInt32(16 * id.value))
            return (disk.mount.isRaw ? device.path : "/run/skiff/disks/\(id.value)", device)
        }
    }

    func unmapFromGuest(_ id: SCSIController.DiskID) async throws {
        _ = state.withLock { $0.held.removeValue(forKey: id.value) }
    }
}

/// Block storage in the spec (device and image mounts, `linux.devices` block devices, a root
/// that is an image) goes over SCSI; the guest spec names what the guest has.
@Suite(.timeLimit(.minutes(1))) struct BlockVolumeTests {
    /// Adds `mounts` and `devices` (and device rules) to the bundle's spec.
    private func amend(_ request: Containerd_Task_V2_CreateTaskRequest, mounts: [[String: Any]] = [], devices: [[String: Any]] = [],
                       rules: [[String: Any]] = []) throws {
        let path = request.bundle + "/config.json"
        var spec = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        spec["mounts"] = ((spec["mounts"] as? [[String: Any]]) ?? []) + mounts
        var linux = (spec["linux"] as? [String: Any]) ?? [:]
        linux["devices"] = devices
        linux["resources"] = ["devices": rules]
        spec["linux"] = linux
        try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: path))
    }

    private func guestSpec(_ request: Containerd_Task_V2_CreateTaskRequest) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: request.bundle + "/" + GuestSpec.fileName))
        return try #require(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    private func image(_ rig: PodRig, _ name: String) -> String {
        let path = "\(rig.root)/\(name)"
        FileManager.default.createFile(atPath: path, contents: Data(count: 4096))
        return path
    }

    @Test func anImageMountIsMountedInTheGuestAndBoundIntoTheContainer() async throws {
        let rig = PodRig()
        defer { rig.cleanUp() }
        let request = try rig.bundle("a")
        let data = image(rig, "data.ext4"), ro = image(rig, "ro.erofs")
        try amend(request, mounts: [["destination": "/data", "type": "ext4", "source": data, "options": ["rw", "noatime"]],
                                    ["destination": "/ro", "type": "erofs", "source": ro, "options": ["ro", "loop"]]])
        _ = try await rig.pod.create(request)
        let disks = try #require(rig.vm?.fakeDisks)
        #expect(disks.held == [.init(path: data, readOnly: false, mount: .init(fstype: "ext4", options: ["noatime"])),
                               .init(path: ro, readOnly: true, mount: .init(fstype: "erofs"))])
        let mounts = try #require(try guestSpec(request)["mounts"] as? [[String: Any]])
        let byDestination = Dictionary(uniqueKeysWithValues: mounts.map { ($0["destination"] as? String ?? "", $0) })
        #expect(byDestination["/data"]?["type"] as? String == "bind")
        #expect(byDestination["/data"]?["source"] as? String == "/run/skiff/disks/1")
        #expect(byDestination["/data"]?["options"] as? [String] == ["rbind", "rw"])
        #expect(byDestination["/ro"]?["source"] as? String == "/run/skiff/disks/2")
        #expect(byDestination["/ro"]?["options"] as? [String] == ["rbind", "ro"])
        try await rig.pod.delete(id: "a", execID: "")
        #expect(disks.held.isEmpty, "delete lets both disks go")
    }

    @Test func aBlockDeviceReachesTheContainerWithTheGuestsNumbers() async throws {
        // Any block device of this host, by the numbers containerd would have put in the spec.
        let entries = try FileManager.default.contentsOfDirectory(atPath: "/sys/dev/block").sorted()
        let numbers = try #require(entries.first, "the host has a block device").split(separator: ":").compactMap { Int64($0) }
        let expectedSource = try BlockVolumes.hostDevice(major: numbers[0], minor: numbers[1])
        let rig = PodRig()
        defer { rig.cleanUp() }
        let request = try rig.bundle("a")
        try amend(request, devices: [["path": "/dev/xvdb", "type": "b", "major": numbers[0], "minor": numbers[1], "fileMode": 432]],
                  rules: [["allow": false, "access": "rwm"], ["allow": true, "type": "b", "major": numbers[0], "minor": numbers[1], "access": "rw"]])
        _ = try await rig.pod.create(request)
        #expect(rig.vm?.fakeDisks.held == [.init(path: expectedSource, readOnly: false, mount: .raw)])
        let linux = try #require(try guestSpec(request)["linux"] as? [String: Any])
        let device = try #require((linux["devices"] as? [[String: Any]])?.first)
        #expect(device["path"] as? String == "/dev/xvdb" && device["major"] as? Int == 8 && device["minor"] as? Int == 16)
        #expect(device["fileMode"] as? Int == 432, "the rest of the entry is kept")
        let rules = try #require((linux["resources"] as? [String: Any])?["devices"] as? [[String: Any]])
        #expect(rules.count == 2 && rules[1]["major"] as? Int == 8 && rules[1]["minor"] as? Int == 16 && rules[1]["access"] as? String == "rw")
        #expect(rules[0]["major"] == nil, "the deny-all rule stays as it was")
    }

    @Test func aBlockDeviceThisHostDoesNotHaveIsRefusedBeforeAnythingIsAttached() async throws {
        let rig = PodRig()
        defer { rig.cleanUp() }
        let request = try rig.bundle("a", binds: 1)
        try amend(request, devices: [["path": "/dev/xvdb", "type": "b", "major": 4095, "minor": 1048575]])
        #expect(await errorCode { _ = try await rig.pod.create(request) } == .failedPrecondition)
        #expect(rig.vm?.fakeDisks.held.isEmpty == true && rig.vm?.fakeShares.held == 0)
        #expect(await rig.pod.isEmpty)
    }

    @Test func aDeviceMountWithoutItsSourceIsAnInvalidArgument() async throws {
        let rig = PodRig()
        defer { rig.cleanUp() }
        let request = try rig.bundle("a")
        try amend(request, mounts: [["destination": "/data", "type": "ext4", "source": "\(rig.root)/missing.img"]])
        #expect(await errorCode { _ = try await rig.pod.create(request) } == .invalidArgument)
    }

    @Test func aDiskTheGuestCannotMountIsLetGoAndTheCreateUndone() async throws {
        let rig = PodRig { $0.fakeDisks.failMap(true) }
        defer { rig.cleanUp() }
        let request = try rig.bundle("a", binds: 1)
        try amend(request, mounts: [["destination": "/data", "type": "ext4", "source": image(rig, "data.ext4")]])
        await #expect(throws: SkiffError.self) { _ = try await rig.pod.create(request) }
        #expect(rig.vm?.fakeDisks.held.isEmpty == true && rig.vm?.fakeShares.held == 0)
        #expect(rig.vm?.state.withLock { $0.terminated } == 1, "the VM it was alone in ends")
    }

    @Test func aRootThatIsAnImageIsTheGuestsRootAsItIs() async throws {
        let rig = PodRig()
        defer { rig.cleanUp() }
        var request = try rig.bundle("a")
        let root = image(rig, "root.ext4")
        request.rootfs = [.with { $0.type = "ext4"; $0.source = root; $0.options = ["rw"] }]
        _ = try await rig.pod.create(request)
        #expect(rig.vm?.fakeDisks.held == [.init(path: root, readOnly: false, mount: .init(fstype: "ext4"))])
        #expect((try guestSpec(request)["root"] as? [String: Any])?["path"] as? String == "/run/skiff/disks/1")
        #expect(rig.rootfs.mounted.withLock { $0.isEmpty }, "nothing mounted on the host")
    }

    @Test func theSpecsBlockStorageIsPlannedFromItsMountsAndDevices() throws {
        let sys = "/tmp/skiff-sys-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: sys) }
        try FileManager.default.createDirectory(atPath: sys + "/dev/block/7:3", withIntermediateDirectories: true)
        try "MAJOR=7\nMINOR=3\nDEVNAME=loop3\nDEVTYPE=disk\n".write(toFile: sys + "/dev/block/7:3/uevent", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: sys + "/dev/block/7:4", withIntermediateDirectories: true)
        try "DEVNAME=../etc/passwd\n".write(toFile: sys + "/dev/block/7:4/uevent", atomically: true, encoding: .utf8)
        let spec = OCISpec(mounts: [
            OCISpec.Mount(destination: "/proc", type: "proc", source: "proc"),
            OCISpec.Mount(destination: "/etc/hosts", type: "bind", source: "/etc/hosts", options: ["rbind", "ro"]),
            OCISpec.Mount(destination: "/d", type: "ext4", source: "/etc/hosts", options: ["ro", "nodev"]),
            OCISpec.Mount(destination: "/t", type: "tmpfs", source: "/etc/hosts"),
            OCISpec.Mount(destination: "/x", type: "xfs", source: "/etc", options: []),
        ], linux: OCISpec.Linux(devices: [OCISpec.Device(path: "/dev/fuse", type: "c", major: 10, minor: 229),
                                          OCISpec.Device(path: "/dev/xvda", type: "b", major: 7, minor: 3)]))
        #expect(try BlockVolumes.plan(spec, sysfs: sys) == [
            .mount(index: 2, source: "/etc/hosts", config: .init(fstype: "ext4", options: ["nodev"]), readOnly: true),
            .device(index: 1, source: "/dev/loop3"),
        ], "binds, virtual filesystems, directories and character devices stay as they are")
        let unknown = OCISpec(linux: OCISpec.Linux(devices: [OCISpec.Device(path: "/dev/x", type: "b", major: 7, minor: 9)]))
        #expect(throws: SkiffError.self) { try BlockVolumes.plan(unknown, sysfs: sys) }
        let escaping = OCISpec(linux: OCISpec.Linux(devices: [OCISpec.Device(path: "/dev/x", type: "b", major: 7, minor: 4)]))
        #expect(throws: SkiffError.self, "a device name leaving /dev") { try BlockVolumes.plan(escaping, sysfs: sys) }
        let noNumbers = OCISpec(linux: OCISpec.Linux(devices: [OCISpec.Device(path: "/dev/x", type: "b")]))
        #expect(throws: SkiffError.self) { try BlockVolumes.plan(noNumbers, sysfs: sys) }
    }
}
