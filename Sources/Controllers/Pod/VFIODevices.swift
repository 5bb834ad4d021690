import Foundation
import Glibc
import SkiffSupport
import VMController

/// The spec's VFIO devices, which Kubernetes device plugins hand a container as `linux.devices`
/// entries: `/dev/vfio/N` (IOMMU group N, the legacy VFIO group interface) and
/// `/dev/vfio/devices/vfioX` (a device's iommufd cdev). Each names host PCI functions that go to
/// the VM whole (the vPCI sub-controller, QEMU's `vfio-pci`), where the guest's own driver
/// takes them; so the entries themselves, host VFIO nodes, are left out of the guest spec, as is
/// `/dev/vfio/vfio` (the host's VFIO container). From the kernel's sysfs: a group's functions
/// are /sys/kernel/iommu_groups/N/devices/*, a cdev's function is /sys/class/vfio-dev/vfioX/device,
/// and a function's driver is the last part of its `driver` link (Documentation/driver-api/vfio.rst).
enum VFIODevices {
    /// Every PCI function the spec's VFIO entries name, in spec order, once each; and the
    /// indexes of `linux.devices` entries to leave out of the guest spec. InvalidArgument for a
    /// group or device that does not exist on the host; FailedPrecondition for a function not
    /// bound to vfio-pci on the host (its host driver still has it). Nothing is touched.
    static func plan(_ spec: OCISpec, sysfs: String = "/sys") throws(SkiffError) -> (devices: [VPCIController.Device], dropped: [Int]) {
        var functions: [String] = []
        var dropped: [Int] = []
        for (index, entry) in (spec.linux?.devices ?? []).enumerated() {
            guard let path = entry.path, path.hasPrefix("/dev/vfio/") else { continue }
            dropped.append(index)
            let name = String(path.dropFirst("/dev/vfio/".count))
            if name == "vfio" { continue }
            if let group = UInt32(name) {
                let dir = "\(sysfs)/kernel/iommu_groups/\(group)/devices"
                guard let members = try? FileManager.default.contentsOfDirectory(atPath: dir) else {
                    throw .invalidArgument("\(path): IOMMU group \(group) does not exist on this host")
                }
                functions += members.sorted()
            } else if name.hasPrefix("devices/"), let cdev = name.split(separator: "/").last, !cdev.contains("..") {
                let link = "\(sysfs)/class/vfio-dev/\(cdev)/device"
                guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: link),
                      let function = target.split(separator: "/").last else {
                    throw .invalidArgument("\(path): no VFIO device \(cdev) on this host")
                }
                functions.append(String(function))
            } else {
                throw .invalidArgument("\(path) is neither a VFIO group (/dev/vfio/N) nor a VFIO device (/dev/vfio/devices/vfioX)")
            }
        }
        var devices: [VPCIController.Device] = []
        for function in functions where !devices.contains(where: { $0.identity == function }) {
            let driver = (try? FileManager.default.destinationOfSymbolicLink(atPath: "\(sysfs)/bus/pci/devices/\(function)/driver"))?
                .split(separator: "/").last.map(String.init)
            guard driver == "vfio-pci" else {
                throw .failedPrecondition("PCI device \(function) is bound to \(driver.map { "\($0)" } ?? "no driver") on the host, not vfio-pci: bind it to vfio-pci before giving it to a container")
            }
            devices.append(VPCIController.Device(identity: function, driver: "vfio-pci", properties: ["host": .string(function)]))
        }
        return (devices, dropped)
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

    /// Assigns `devices` to the VM, recording each release as soon as it is reserved.
    static func assign(_ devices: [VPCIController.Device], to vm: (any ContainerDevices)?,
                       taken: inout [ContainerController.Release]) async throws(SkiffError) {
        guard !devices.isEmpty else { return }
        guard let vm else { throw .unavailable("the VM cannot take PCI devices") }
        for device in devices {
            let id = try await guestCall("assign PCI device \(device.identity)") { try await vm.reserve(device) }
            taken.append(.pciDevice(id))
            _ = try await guestCall("assign PCI device \(device.identity) to the VM") { try await vm.addToVM(id) }
        }
    }
}
