import ContainerdAPI
import Foundation
import Glibc
@testable import PodController
import SkiffSupport
import Synchronization
import Testing
import VMController

/// The VM's PCI devices, in memory: what was reserved and is held, adding failing on demand.
final class FakeDevices: ContainerDevices, Sendable {
    struct State {
        var held: [Int: VPCIController.Device] = [:]
        var next = 0
        var failAdd = false
    }
    let state = Mutex(State())
    var held: [VPCIController.Device] { state.withLock { $0.held.sorted { $0.key < $1.key }.map(\.value) } }
    func failAdd(_ on: Bool) { state.withLock { $0.failAdd = on } }

    func reserve(_ device: VPCIController.Device) async throws -> VPCIController.DeviceID {
        state.withLock { state in
            state.next += 1
            state.held[state.next] = device
            return VPCIController.DeviceID(value: state.next)
        }
    }
    func addToVM(_ id: VPCIController.DeviceID) async throws -> GuestPCIDevice {
        try state.withLock { state in
            if state.failAdd { throw Injected(what: "add PCI device") }
            return GuestPCIDevice(address: "0000:01:00.0", vendor: 0x10de, device: 0x1eb8, driver: "nvidia")
        }
    }
    func removeFromVM(_ id: VPCIController.DeviceID) async throws { _ = state.withLock { $0.held.removeValue(forKey: id.value) } }
    var assignments: [VPCIController.Assignment] {
        state.withLock { state in
            state.held.sorted { $0.key < $1.key }.map { id, device in
                VPCIController.Assignment(id: .init(value: id), identity: device.identity, driver: device.driver, state: .ready, references: 1, guest: nil)
            }
        }
    }
}

/// `linux.devices` VFIO entries (a Kubernetes device plugin's `/dev/vfio/N`) resolve to the
/// host PCI functions of the IOMMU group, checked before anything is touched, and go to the VM
/// through the vPCI sub-controller; the host VFIO nodes are left out of the guest spec.
@Suite(.timeLimit(.minutes(1))) struct VFIODeviceTests {
    /// A sysfs with IOMMU group 7 holding two functions bound to `drivers`, and a cdev vfio0.
    private func sysfs(drivers: [String] = ["vfio-pci", "vfio-pci"]) throws -> String {
        let sys = "/tmp/skiff-sysfs-\(UUID().uuidString.prefix(8))"
        let fm = FileManager.default
        for (n, driver) in drivers.enumerated() {
            let function = "0000:3b:00.\(n)"
            try fm.createDirectory(atPath: "\(sys)/bus/pci/devices/\(function)", withIntermediateDirectories: true)
            try fm.createDirectory(atPath: "\(sys)/bus/pci/drivers/\(driver)", withIntermediateDirectories: true)
            try fm.createSymbolicLink(atPath: "\(sys)/bus/pci/devices/\(function)/driver", withDestinationPath: "../../drivers/\(driver)")
            try fm.createDirectory(atPath: "\(sys)/kernel/iommu_groups/7/devices", withIntermediateDirectories: true)
            try fm.createSymbolicLink(atPath: "\(sys)/kernel/iommu_groups/7/devices/\(function)", withDestinationPath: "../../../bus/pci/devices/\(function)")
        }
        try fm.createDirectory(atPath: "\(sys)/class/vfio-dev/vfio0", withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: "\(sys)/class/vfio-dev/vfio0/device", withDestinationPath: "../../../bus/pci/devices/0000:3b:00.1")
        return sys
    }

    /// Sets the bundle's `linux.devices` to `devices`.
    private func setDevices(_ request: Containerd_Task_V2_CreateTaskRequest, _ devices: [[String: Any]]) throws {
        let path = request.bundle + "/config.json"
        var json = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        var linux = try #require(json["linux"] as? [String: Any])
        linux["devices"] = devices
        json["linux"] = linux
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path))
    }

    private func spec(_ devices: [String]) -> OCISpec {
        OCISpec(linux: OCISpec.Linux(devices: devices.map { OCISpec.Device(path: $0, type: "c", major: 243, minor: 0) }))
    }

    @Test func aGroupIsEveryFunctionInItAndTheVFIONodesLeaveTheGuestSpec() throws {
        let sys = try sysfs()
        defer { try? FileManager.default.removeItem(atPath: sys) }
        let plan = try VFIODevices.plan(spec(["/dev/fuse", "/dev/vfio/7", "/dev/vfio/vfio", "/dev/vfio/devices/vfio0"]), sysfs: sys)
        #expect(plan.devices.map(\.identity) == ["0000:3b:00.0", "0000:3b:00.1"], "the cdev's function is the group's second, once")
        #expect(plan.devices.allSatisfy { $0.driver == "vfio-pci" && $0.properties["host"] == .string($0.identity) })
        #expect(plan.dropped == [1, 2, 3], "/dev/fuse stays")
    }

    @Test func aMissingGroupOrAFunctionNotOnVFIOIsRefusedWithItsCode() throws {
        let sys = try sysfs(drivers: ["vfio-pci", "snd_hda_intel"])
        defer { try? FileManager.default.removeItem(atPath: sys) }
        do {
            _ = try VFIODevices.plan(spec(["/dev/vfio/42"]), sysfs: sys)
            Issue.record("group 42 does not exist")
        } catch { #expect(error.code == .invalidArgument && error.message.contains("IOMMU group 42 does not exist"), "\(error.message)") }
        do {
            _ = try VFIODevices.plan(spec(["/dev/vfio/7"]), sysfs: sys)
            Issue.record("a function bound to its host driver")
        } catch { #expect(error.code == .failedPrecondition && error.message.contains("snd_hda_intel"), "\(error.message)") }
        #expect(throws: SkiffError.self, "neither a group nor a cdev") { try VFIODevices.plan(spec(["/dev/vfio/../kvm"]), sysfs: sys) }
    }

    @Test func aHostDriversDynamicDeviceNumberIsRefusedAndFixedOnesPass() throws {
        func check(_ major: Int64, _ path: String = "/dev/x") throws {
            try VFIODevices.checkCharacterDevices(OCISpec(linux: OCISpec.Linux(devices: [OCISpec.Device(path: path, type: "c", major: major, minor: 0)])))
        }
        try check(10, "/dev/fuse")
        try check(1, "/dev/null")
        try check(243, "/dev/vfio/7")
        #expect(throws: SkiffError.self, "a dynamic major (nvidia-uvm style)") { try check(237, "/dev/nvidia-uvm") }
        #expect(throws: SkiffError.self) { try check(500) }
    }

    @Test func aContainerGetsItsGroupsDevicesInTheVMAndDeleteRemovesThem() async throws {
        let sys = try sysfs()
        defer { try? FileManager.default.removeItem(atPath: sys) }
        let rig = PodRig(sysfs: sys)
        defer { rig.cleanUp() }
        let request = try rig.bundle("gpu")
        try setDevices(request, [["path": "/dev/vfio/7", "type": "c", "major": 243, "minor": 0], ["path": "/dev/fuse", "type": "c", "major": 10, "minor": 229]])
        _ = try await rig.pod.create(request)
        let vm = try #require(rig.vm)
        #expect(vm.fakeDevices.held.map(\.identity) == ["0000:3b:00.0", "0000:3b:00.1"])
        #expect(await rig.pod.pciDevices().map(\.identity) == ["0000:3b:00.0", "0000:3b:00.1"], "what shimdiag devices lists")
        let guestSpec = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: request.bundle + "/" + GuestSpec.fileName))) as? [String: Any])
        let devices = ((guestSpec["linux"] as? [String: Any])?["devices"] as? [[String: Any]])?.compactMap { $0["path"] as? String }
        #expect(devices == ["/dev/fuse"])
        try await rig.pod.delete(id: "gpu", execID: "")
        #expect(vm.fakeDevices.held.isEmpty)
    }

    @Test func aGroupThisHostDoesNotHaveIsRefusedBeforeAnythingIsTouched() async throws {
        let rig = PodRig()
        defer { rig.cleanUp() }
        let request = try rig.bundle("gpu", binds: 1)
        try setDevices(request, [["path": "/dev/vfio/42", "type": "c", "major": 243, "minor": 0]])
        #expect(await errorCode { _ = try await rig.pod.create(request) } == .invalidArgument)
        #expect(rig.vm?.fakeShares.held == 0 && rig.vm?.fakeDevices.held.isEmpty == true)
        #expect(await rig.pod.isEmpty)
    }

    @Test func aDeviceTheVMCannotTakeUndoesTheCreate() async throws {
        let sys = try sysfs()
        defer { try? FileManager.default.removeItem(atPath: sys) }
        let rig = PodRig(sysfs: sys) { $0.fakeDevices.failAdd(true) }
        defer { rig.cleanUp() }
        let request = try rig.bundle("gpu", binds: 1)
        try setDevices(request, [["path": "/dev/vfio/7", "type": "c", "major": 243, "minor": 0]])
        await #expect(throws: SkiffError.self) { _ = try await rig.pod.create(request) }
        #expect(rig.vm?.fakeDevices.held.isEmpty == true && rig.vm?.fakeShares.held == 0)
    }
}
