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
        /// Devices bound to vfio-pci come up in no IOMMU group (a VM without a virtual IOMMU).
        var noGroup = false
    }
    let state = Mutex(State())
    var held: [VPCIController.Device] { state.withLock { $0.held.sorted { $0.key < $1.key }.map(\.value) } }
    func failAdd(_ on: Bool) { state.withLock { $0.failAdd = on } }
    func noGroup(_ on: Bool) { state.withLock { $0.noGroup = on } }

    func reserve(_ device: VPCIController.Device) async throws -> VPCIController.DeviceID {
        state.withLock { state in
            state.next += 1
            state.held[state.next] = device
            return VPCIController.DeviceID(value: state.next)
        }
    }
    /// Bound to its guest driver; one asked to bind to vfio-pci is in guest IOMMU group 20+id,
    /// its node 246:id.
    func addToVM(_ id: VPCIController.DeviceID) async throws -> GuestPCIDevice {
        try state.withLock { state in
            if state.failAdd { throw Injected(what: "add PCI device") }
            guard state.held[id.value]?.guestDriver == "vfio-pci", !state.noGroup else {
                return GuestPCIDevice(address: "0000:01:00.0", vendor: 0x10de, device: 0x1eb8, driver: "nvidia")
            }
            return GuestPCIDevice(address: "0000:0\(id.value):00.0", vendor: 0x10de, device: 0x1eb8, driver: "vfio-pci",
                                  vfioGroup: .init(group: UInt32(20 + id.value), major: 246, minor: UInt32(id.value)))
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
        #expect(plan.mode == .vfio && plan.devices.allSatisfy { $0.guestDriver == "vfio-pci" }, "bound to vfio-pci in the guest, as under runc")
    }

    /// A spec as a device plugin and containerd's CRI make it: the nodes, and a rule allowing each.
    private func pluginSpec(_ paths: [(String, Int64, Int64)], annotations: [String: String]? = nil) -> OCISpec {
        let rules = [OCISpec.Resources.DeviceRule(type: "a", extra: ["allow": .bool(false), "access": .string("rwm")])]
            + paths.map { OCISpec.Resources.DeviceRule(type: "c", major: $0.1, minor: $0.2, extra: ["allow": .bool(true), "access": .string("rw")]) }
        return OCISpec(linux: OCISpec.Linux(
            devices: paths.map { OCISpec.Device(path: $0.0, type: "c", major: $0.1, minor: $0.2, extra: ["fileMode": 438]) },
            resources: OCISpec.Resources(devices: rules)), annotations: annotations)
    }

    @Test func inVFIOModeTheContainerGetsTheGuestsGroupNodesAndRulesForThem() throws {
        let sys = try sysfs()
        defer { try? FileManager.default.removeItem(atPath: sys) }
        let spec = pluginSpec([("/dev/vfio/vfio", 10, 196), ("/dev/vfio/7", 243, 0), ("/dev/fuse", 10, 229)])
        let plan = try VFIODevices.plan(spec, sysfs: sys)
        let seen = ["0000:3b:00.0": GuestPCIDevice(address: "0000:01:00.0", vendor: 1, device: 2, driver: "vfio-pci", vfioGroup: .init(group: 3, major: 246, minor: 0)),
                    "0000:3b:00.1": GuestPCIDevice(address: "0000:02:00.0", vendor: 1, device: 2, driver: "vfio-pci", vfioGroup: .init(group: 4, major: 246, minor: 1))]
        let guest = try VFIODevices.rewrite(spec, plan: plan, seen: seen)
        let nodes = guest.linux?.devices?.map { "\($0.path ?? "") \($0.major ?? -1):\($0.minor ?? -1)" }
        #expect(nodes == ["/dev/vfio/vfio 10:196", "/dev/vfio/3 246:0", "/dev/vfio/4 246:1", "/dev/fuse 10:229"],
                "host group 7's two functions are guest groups 3 and 4")
        #expect(guest.linux?.devices?[1].extra["fileMode"] == 438, "the entry's mode and owner carry over")
        let allowed = guest.linux?.resources?.devices?.filter { $0.type == "c" }.map { "\($0.major ?? -1):\($0.minor ?? -1)" }
        #expect(allowed == ["10:196", "246:0", "246:1", "10:229"], "the host group's rule became the guest groups'")
    }

    @Test func aCdevEntryBecomesTheGuestsGroupAndTheVFIOContainer() throws {
        let sys = try sysfs()
        defer { try? FileManager.default.removeItem(atPath: sys) }
        let spec = pluginSpec([("/dev/vfio/devices/vfio0", 511, 0)])
        let plan = try VFIODevices.plan(spec, sysfs: sys)
        let seen = ["0000:3b:00.1": GuestPCIDevice(address: "0000:01:00.0", vendor: 1, device: 2, driver: "vfio-pci", vfioGroup: .init(group: 3, major: 246, minor: 0))]
        let guest = try VFIODevices.rewrite(spec, plan: plan, seen: seen)
        #expect(guest.linux?.devices?.map { $0.path ?? "" } == ["/dev/vfio/3", "/dev/vfio/vfio"], "the guest kernel has only the group interface")
        #expect(guest.linux?.resources?.devices?.filter { $0.type == "c" }.map { "\($0.major ?? -1):\($0.minor ?? -1)" } == ["246:0", "10:196"])
        do {
            _ = try VFIODevices.rewrite(spec, plan: plan, seen: ["0000:3b:00.1": GuestPCIDevice(address: "0000:01:00.0", vendor: 1, device: 2, driver: "vfio-pci")])
            Issue.record("a device with no VFIO group in the guest")
        } catch { #expect(error.code == .failedPrecondition && error.message.contains("no VFIO group"), "\(error.message)") }
    }

    @Test func inGuestKernelModeTheVFIOEntriesAndTheirRulesLeave() throws {
        let sys = try sysfs()
        defer { try? FileManager.default.removeItem(atPath: sys) }
        let spec = pluginSpec([("/dev/vfio/vfio", 10, 196), ("/dev/vfio/7", 243, 0), ("/dev/fuse", 10, 229)],
                              annotations: [VFIODevices.modeAnnotation: "guest-kernel"])
        let plan = try VFIODevices.plan(spec, sysfs: sys)
        #expect(plan.devices.allSatisfy { $0.guestDriver.isEmpty }, "whichever guest driver binds")
        let podDefault = try VFIODevices.plan(pluginSpec([("/dev/vfio/7", 243, 0)]), defaultMode: "guest-kernel", sysfs: sys)
        #expect(podDefault.mode == .guestKernel, "the pod's mode when the container names none")
        let overridden = try VFIODevices.plan(pluginSpec([("/dev/vfio/7", 243, 0)], annotations: [VFIODevices.modeAnnotation: "vfio"]),
                                              defaultMode: "guest-kernel", sysfs: sys)
        #expect(overridden.mode == .vfio, "the container's own annotation first")
        let guest = try VFIODevices.rewrite(spec, plan: plan, seen: [:])
        #expect(guest.linux?.devices?.map { $0.path ?? "" } == ["/dev/fuse"])
        #expect(guest.linux?.resources?.devices?.filter { $0.type == "c" }.map { "\($0.major ?? -1):\($0.minor ?? -1)" } == ["10:229"])
        let bad = pluginSpec([("/dev/vfio/7", 243, 0)], annotations: [VFIODevices.modeAnnotation: "passthrough"])
        do {
            _ = try VFIODevices.plan(bad, sysfs: sys)
            Issue.record("an unknown mode")
        } catch { #expect(error.code == .invalidArgument && error.message.contains("passthrough"), "\(error.message)") }
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
        #expect(devices == ["/dev/vfio/21", "/dev/vfio/22", "/dev/fuse"], "the guest's groups of the two functions")
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

    @Test func aDeviceWithNoVFIOGroupInTheGuestUndoesTheCreateAndLetsTheDevicesGo() async throws {
        let sys = try sysfs()
        defer { try? FileManager.default.removeItem(atPath: sys) }
        let rig = PodRig(sysfs: sys) { $0.fakeDevices.noGroup(true) }
        defer { rig.cleanUp() }
        let request = try rig.bundle("gpu", binds: 1)
        try setDevices(request, [["path": "/dev/vfio/7", "type": "c", "major": 243, "minor": 0]])
        #expect(await errorCode { _ = try await rig.pod.create(request) } == .failedPrecondition)
        #expect(rig.vm?.fakeDevices.held.isEmpty == true && rig.vm?.fakeShares.held == 0, "both functions were assigned, then let go")
        #expect(await rig.pod.isEmpty)
    }
}
