import ContainerdAPI
import Glibc
import SkiffSupport

/// containerd's rootfs mounts (one overlay or bind, as its snapshotters hand them) made on
/// the host with mount(2), into the bundle the guest sees.
public struct HostRootfs: RootfsMounter {
    public init() {}

    public func mount(_ mounts: [Containerd_Types_Mount], at target: String) throws(SkiffError) {
        guard !mounts.isEmpty else { return }  // the bundle's rootfs is already in place
        guard mounts.count == 1, let m = mounts.first else { throw .invalidArgument("one rootfs mount expected, got \(mounts.count)") }
        mkdir(target, 0o755)
        var flags: UInt = 0
        var data: [String] = []
        for option in m.options {
            switch option {
            case "ro": flags |= UInt(MS_RDONLY)
            case "rw": break
            case "bind": flags |= UInt(MS_BIND)
            case "rbind": flags |= UInt(MS_BIND | MS_REC)
            default: data.append(option)
            }
        }
        let type = m.type == "bind" ? nil : m.type
        guard Glibc.mount(m.source, target, type, flags, data.isEmpty ? nil : data.joined(separator: ",")) == 0 else {
            throw .internalError("mount the rootfs (\(m.type)) on \(target): \(String(cString: strerror(errno)))")
        }
    }

    public func unmount(_ target: String) throws(SkiffError) {
        if umount2(target, Int32(MNT_DETACH)) != 0, errno != EINVAL, errno != ENOENT {
            throw .internalError("unmount \(target): \(String(cString: strerror(errno)))")
        }
    }
}
