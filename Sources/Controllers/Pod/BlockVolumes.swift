import FoundationEssentials
import Glibc
import SkiffSupport
import VMController

/// The spec's block storage, which reaches the VM over SCSI rather than Plan9:
/// - a mount whose source is a host block device or a filesystem image file (an `ext4`, `xfs`,
///   `erofs`… mount, not a bind): the disk is attached, mounted in the guest with the mount's
///   type and options, and the container gets a bind mount of that guest path;
/// - a `linux.devices` block device (type `b`; containerd fills in the host device's numbers,
///   OCI runtime spec "Devices"): the host device with those numbers is attached raw, and the
///   container gets a node of the guest's device, with the guest's numbers, in the entry and in
///   every `linux.resources.devices` rule that named the host's.
enum BlockVolumes {
    enum Volume: Equatable {
        /// `mounts[index]`: a filesystem on the host block device or image `source`.
        case mount(index: Int, source: String, config: SCSIController.MountConfig, readOnly: Bool)
        /// `linux.devices[index]`: the host block device `source`.
        case device(index: Int, source: String)
    }

    /// Mount types that are no filesystem on a device (their sources are names, not paths).
    static let virtualTypes: Set<String> = [
        "bind", "rbind", "none", "proc", "sysfs", "tmpfs", "devtmpfs", "devpts", "mqueue", "shm", "cgroup", "cgroup2",
        "overlay", "securityfs", "debugfs", "tracefs", "hugetlbfs", "fuse", "binfmt_misc", "configfs",
    ]
    /// Options that say how to mount, not what the filesystem takes (`loop` is what SCSI replaces).
    static let hostOnlyOptions: Set<String> = ["ro", "rw", "loop", "bind", "rbind"]

    /// The spec's mounts and devices that go over SCSI, in spec order. InvalidArgument for a
    /// device mount whose source is missing; FailedPrecondition for a block device whose
    /// numbers name no device on this host (`sysfs`: where /sys/dev/block is).
    static func plan(_ spec: OCISpec, sysfs: String = "/sys") throws(SkiffError) -> [Volume] {
        var volumes: [Volume] = []
        for (index, mount) in (spec.mounts ?? []).enumerated() {
            let options = mount.options ?? []
            guard let type = mount.type, !virtualTypes.contains(type), !options.contains("bind"), !options.contains("rbind"),
                  let source = mount.source, source.hasPrefix("/") else { continue }
            guard access(source, F_OK) == 0 else {
                throw .invalidArgument("mount \(index) (\(type) on \(mount.destination ?? "?")): source \(source) does not exist")
            }
            if let volume = diskMount(index: index, type: type, source: source, options: options) { volumes.append(volume) }
        }
        for (index, device) in (spec.linux?.devices ?? []).enumerated() where device.type == "b" {
            guard let major = device.major, let minor = device.minor else {
                throw .invalidArgument("block device \(device.path ?? "?") has no major and minor numbers")
            }
            volumes.append(.device(index: index, source: try hostDevice(major: major, minor: minor, sysfs: sysfs)))
        }
        return volumes
    }

    /// A mount of filesystem `type` from `source` as a disk for the VM, when `source` is a host
    /// block device or an image file (nil for a directory, a missing path, a virtual filesystem).
    static func diskMount(index: Int, type: String, source: String, options: [String]) -> Volume? {
        guard !virtualTypes.contains(type), source.hasPrefix("/") else { return nil }
        var info = stat()
        guard stat(source, &info) == 0, info.st_mode & S_IFMT == S_IFBLK || info.st_mode & S_IFMT == S_IFREG else { return nil }
        let config = SCSIController.MountConfig(fstype: type, options: options.filter { !hostOnlyOptions.contains($0) })
        return .mount(index: index, source: source, config: config, readOnly: options.contains("ro"))
    }

    /// The host's block device with numbers `major`:`minor`, by the kernel's name for it
    /// (`DEVNAME` in /sys/dev/block/MAJOR:MINOR/uevent, a path under /dev).
    static func hostDevice(major: Int64, minor: Int64, sysfs: String = "/sys") throws(SkiffError) -> String {
        let uevent = (try? String(contentsOfFile: "\(sysfs)/dev/block/\(major):\(minor)/uevent", encoding: .utf8)) ?? ""
        guard let name = uevent.split(separator: "\n").first(where: { $0.hasPrefix("DEVNAME=") })?.dropFirst(8),
              !name.isEmpty, !name.split(separator: "/").contains("..") else {
            throw .failedPrecondition("no block device \(major):\(minor) on the host")
        }
        return "/dev/\(name)"
    }

    /// The spec as the guest must see it once `volume` is in the VM at `mountPath` (its device
    /// there: `device`).
    static func apply(_ volume: Volume, mountPath: String, device: GuestBlockDevice, to spec: inout OCISpec) {
        switch volume {
        case let .mount(index, _, _, readOnly):
            guard var mounts = spec.mounts, index < mounts.count else { return }
            mounts[index].type = "bind"
            mounts[index].source = mountPath
            mounts[index].options = ["rbind", readOnly ? "ro" : "rw"]
            spec.mounts = mounts
        case let .device(index, _):
            guard var linux = spec.linux, var devices = linux.devices, index < devices.count else { return }
            let host = (devices[index].major, devices[index].minor)
            devices[index].major = Int64(device.major)
            devices[index].minor = Int64(device.minor)
            linux.devices = devices
            if var rules = linux.resources?.devices {
                for i in rules.indices where rules[i].type == "b" && rules[i].major == host.0 && rules[i].minor == host.1 {
                    rules[i].major = Int64(device.major)
                    rules[i].minor = Int64(device.minor)
                }
                linux.resources?.devices = rules
            }
            spec.linux = linux
        }
    }

    /// Attaches each volume and rewrites `spec` for the guest; every attachment is recorded in
    /// `taken` before it is made.
    static func attach(_ volumes: [Volume], to spec: inout OCISpec, disks: (any ContainerDisks)?,
                       taken: inout [ContainerController.Release]) async throws(SkiffError) {
        guard !volumes.isEmpty else { return }
        guard let disks else { throw .unavailable("the VM has no SCSI controller for the spec's block devices") }
        for volume in volumes {
            let mapped: (mountPath: String, device: GuestBlockDevice)
            switch volume {
            case let .mount(_, source, config, readOnly):
                mapped = try await attach(source, readOnly: readOnly, mount: config, disks: disks, taken: &taken)
            case let .device(_, source):
                mapped = try await attach(source, readOnly: false, mount: .raw, disks: disks, taken: &taken)
            }
            apply(volume, mountPath: mapped.mountPath, device: mapped.device, to: &spec)
        }
    }

    /// Reserves and maps one disk, recording its release as soon as it is reserved.
    static func attach(_ path: String, readOnly: Bool, mount: SCSIController.MountConfig, disks: any ContainerDisks,
                       taken: inout [ContainerController.Release]) async throws(SkiffError) -> (mountPath: String, device: GuestBlockDevice) {
        let id = try await guestCall("attach \(path)") { try await disks.reserve(hostPath: path, readOnly: readOnly, mount: mount) }
        taken.append(.disk(id))
        return try await guestCall("\(mount.isRaw ? "find" : "mount") \(path) in the VM") { try await disks.mapDeviceToGuest(id) }
    }
}
