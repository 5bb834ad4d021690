import FoundationEssentials
import Glibc
import SkiffSupport
import VMController

/// The spec's VFIO devices, which Kubernetes device plugins hand a container as `linux.devices`
/// entries: `/dev/vfio/N` (IOMMU group N, the legacy VFIO group interface), `/dev/vfio/vfio`
/// (the VFIO container) and `/dev/vfio/devices/vfioX` (a device's iommufd cdev). Each names
/// host PCI functions that go to the VM whole (the vPCI sub-controller, QEMU's `vfio-pci`).
/// From the kernel's sysfs: a group's functions are /sys/kernel/iommu_groups/N/devices/*, a
/// cdev's function is /sys/class/vfio-dev/vfioX/device, and a function's driver is the last
/// part of its `driver` link (Documentation/driver-api/vfio.rst).
///
/// In the guest, by the container's annotation `io.skiff.vfio-mode` (Kata's `vfio_mode`), else
/// the pod's (`SandboxConfig.vfioMode`, from the runtime config file or the first container):
/// - `vfio` (the default, as under runc): the guest binds each function to vfio-pci behind
///   the VM's emulated IOMMU, and the container gets `/dev/vfio/G` for the guest's IOMMU group
///   G of each function (the number is the guest's, not the host's, as the group a process
///   finds in the guest's sysfs is), with `/dev/vfio/vfio` when the spec named it or named a
///   cdev (the guest kernel has only the group interface); the `linux.resources.devices`
///   rules that named a host group's node name the guest's;
/// - `guest-kernel`: the guest's own driver takes each function, and the VFIO entries leave
///   the guest spec (the device shows in the guest as its driver presents it).
enum VFIODevices {
    static let modeAnnotation = "io.skiff.vfio-mode"
    enum Mode: String { case vfio, guestKernel = "guest-kernel" }

    /// One `linux.devices` VFIO entry: its index and the host functions it names (none for
    /// `/dev/vfio/vfio`).
    struct Entry: Equatable {
        var index: Int
        var functions: [String]
        var isContainer: Bool
        var isCdev: Bool
    }

    struct Plan: Equatable {
        var mode: Mode
        var devices: [VPCIController.Device]
        var entries: [Entry]
        /// The indexes of the spec's VFIO entries, each replaced or left out of the guest spec.
        var dropped: [Int] { entries.map(\.index) }
    }

    /// Every PCI function the spec's VFIO entries name, in spec order, once each.
    /// InvalidArgument for a group or device that does not exist on the host or an unknown
    /// mode; FailedPrecondition for a function not bound to vfio-pci on the host (its host
    /// driver still has it). Nothing is touched.
    static func plan(_ spec: OCISpec, defaultMode: String = Mode.vfio.rawValue, sysfs: String = "/sys") throws(SkiffError) -> Plan {
        let modeText = spec.annotations?[modeAnnotation] ?? defaultMode
        guard let mode = Mode(rawValue: modeText) else {
            throw .invalidArgument("annotation \(modeAnnotation)=\(modeText) is neither \(Mode.vfio.rawValue) nor \(Mode.guestKernel.rawValue)")
        }
        var entries: [Entry] = []
        for (index, device) in (spec.linux?.devices ?? []).enumerated() {
            guard let path = device.path, path.hasPrefix("/dev/vfio/") else { continue }
            let name = String(path.dropFirst("/dev/vfio/".count))
            if name == "vfio" {
                entries.append(Entry(index: index, functions: [], isContainer: true, isCdev: false))
            } else if let group = UInt32(name) {
                let dir = "\(sysfs)/kernel/iommu_groups/\(group)/devices"
                guard let members = try? FileManager.default.contentsOfDirectory(atPath: dir) else {
                    throw .invalidArgument("\(path): IOMMU group \(group) does not exist on this host")
                }
                entries.append(Entry(index: index, functions: members.sorted(), isContainer: false, isCdev: false))
            } else if name.hasPrefix("devices/"), let cdev = name.split(separator: "/").last, !cdev.contains("..") {
                let link = "\(sysfs)/class/vfio-dev/\(cdev)/device"
                guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: link),
                      let function = target.split(separator: "/").last else {
                    throw .invalidArgument("\(path): no VFIO device \(cdev) on this host")
                }
                entries.append(Entry(index: index, functions: [String(function)], isContainer: false, isCdev: true))
            } else {
                throw .invalidArgument("\(path) is neither a VFIO group (/dev/vfio/N) nor a VFIO device (/dev/vfio/devices/vfioX)")
            }
        }
        var devices: [VPCIController.Device] = []
        for function in entries.flatMap(\.functions) where !devices.contains(where: { $0.identity == function }) {
            let driver = (try? FileManager.default.destinationOfSymbolicLink(atPath: "\(sysfs)/bus/pci/devices/\(function)/driver"))?
                .split(separator: "/").last.map(String.init)
            guard driver == "vfio-pci" else {
                throw .failedPrecondition("PCI device \(function) is bound to \(driver.map { "\($0)" } ?? "no driver") on the host, not vfio-pci: bind it to vfio-pci before giving it to a container")
            }
            devices.append(VPCIController.Device(identity: function, driver: "vfio-pci", properties: ["host": .string(function)],
                                                 guestDriver: mode == .vfio ? "vfio-pci" : ""))
        }
        return Plan(mode: mode, devices: devices, entries: entries)
    }

    /// Character devices whose major number the host's kernel handed out at run time
    /// (Documentation/admin-guide/devices.txt: 234-254 and 384-511 are dynamic): they name a
    /// host driver's device, which the VM does not have, and the guest would make a node with
    /// them that opens nothing or something else. InvalidArgument, naming the entry. Fixed
    /// numbers (`/dev/fuse` 10:229, `/dev/net/tun` 10:200, …) mean the same device in the guest,
    /// where crun makes the node; VFIO and block entries are handled apart.
    static func checkCharacterDevices(_ spec: OCISpec) throws(SkiffError) {
        for entry in spec.linux?.devices ?? [] where entry.type == "c" || entry.type == "u" {
            guard let path = entry.path, !path.hasPrefix("/dev/vfio/"), let major = entry.major else { continue }
            if (234...254).contains(major) || (384...511).contains(major) {
                throw .invalidArgument("device \(path) (\(major):\(entry.minor ?? 0)) is a host driver's device with a number given at run time; it has no meaning inside the pod's VM")
            }
        }
    }

    /// Assigns the plan's devices to the VM, recording each release as soon as it is reserved,
    /// and rewrites the spec's VFIO entries for the guest (see the type's doc).
    static func assign(_ plan: Plan, to vm: (any ContainerDevices)?, spec: inout OCISpec,
                       taken: inout [ContainerController.Release]) async throws(SkiffError) {
        guard !plan.entries.isEmpty else { return }
        var seen: [String: GuestPCIDevice] = [:]
        if !plan.devices.isEmpty {
            guard let vm else { throw .unavailable("the VM cannot take PCI devices") }
            for device in plan.devices {
                let id = try await guestCall("assign PCI device \(device.identity)") { try await vm.reserve(device) }
                taken.append(.pciDevice(id))
                seen[device.identity] = try await guestCall("assign PCI device \(device.identity) to the VM") { try await vm.addToVM(id) }
            }
        }
        spec = try rewrite(spec, plan: plan, seen: seen)
    }

    /// The spec the guest gets: in `vfio` mode each group or cdev entry becomes the guest's
    /// group nodes, and a device rule that named the host's node names the guest's; in
    /// `guest-kernel` mode the VFIO entries and their rules go. FailedPrecondition when a
    /// device in `vfio` mode came up without a VFIO group.
    static func rewrite(_ spec: OCISpec, plan: Plan, seen: [String: GuestPCIDevice]) throws(SkiffError) -> OCISpec {
        guard var linux = spec.linux, let devices = linux.devices else { return spec }
        let byIndex = Dictionary(uniqueKeysWithValues: plan.entries.map { ($0.index, $0) })
        var out: [OCISpec.Device] = []
        var rules = linux.resources?.devices ?? []
        for (index, device) in devices.enumerated() {
            guard let entry = byIndex[index] else { out.append(device); continue }
            var nodes: [OCISpec.Device] = []
            if plan.mode == .vfio, entry.isContainer {
                nodes = [device]
            } else if plan.mode == .vfio {
                for function in entry.functions {
                    guard let group = seen[function]?.vfioGroup else {
                        throw .failedPrecondition("PCI device \(function) has no VFIO group in the guest (the VM has no virtual IOMMU); use \(modeAnnotation)=\(Mode.guestKernel.rawValue) or a pod with root ports")
                    }
                    var node = device
                    node.path = "/dev/vfio/\(group.group)"
                    node.type = "c"
                    node.major = Int64(group.major)
                    node.minor = Int64(group.minor)
                    if !nodes.contains(node) { nodes.append(node) }
                }
            }
            out += nodes.filter { node in !out.contains { $0.path == node.path } }
            if plan.mode == .vfio, entry.isCdev, !devices.contains(where: { $0.path == "/dev/vfio/vfio" }), !out.contains(where: { $0.path == "/dev/vfio/vfio" }) {
                out.append(OCISpec.Device(path: "/dev/vfio/vfio", type: "c", major: 10, minor: 196))
                rules.append(.init(type: "c", major: 10, minor: 196, extra: ["allow": .bool(true), "access": .string("rwm")]))
            }
            guard let major = device.major, let minor = device.minor else { continue }
            rules = rules.flatMap { rule -> [OCISpec.Resources.DeviceRule] in
                guard rule.type == "c", rule.major == major, rule.minor == minor else { return [rule] }
                return nodes.map { node in
                    var guestRule = rule
                    guestRule.major = node.major
                    guestRule.minor = node.minor
                    return guestRule
                }
            }
        }
        linux.devices = out
        if linux.resources?.devices != nil { linux.resources?.devices = rules }
        var spec = spec
        spec.linux = linux
        return spec
    }
}
