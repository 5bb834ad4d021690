import AgentAPI
import Glibc
import SwiftProtobuf

/// The pod's SCSI disks in the guest: found under /sys by the address the host gave them
/// (controller, target, LUN), mounted, and let go before the host unplugs them. The kernel's
/// names: /sys/class/scsi_host/hostH (the H-th SCSI host, one per virtio-scsi controller in
/// their PCI order), /sys/bus/scsi/devices/H:C:T:L/block/sdX, and that device's `delete`.
public struct SCSIDisks: Sendable {
    public var sys: String
    public var dev: String

    public init(sys: String = "/sys", dev: String = "/dev") {
        self.sys = sys
        self.dev = dev
    }

    /// The guest's SCSI host number of virtio-scsi controller `controller`.
    func host(of controller: UInt32) -> Int? {
        guard let dir = opendir("\(sys)/class/scsi_host") else { return nil }
        defer { closedir(dir) }
        var hosts: [Int] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name.hasPrefix("host"), let number = Int(name.dropFirst(4)) { hosts.append(number) }
        }
        hosts.sort()
        return Int(controller) < hosts.count ? hosts[Int(controller)] : nil
    }

    /// The disk's H:C:T:L directory under /sys/bus/scsi/devices, if it is there.
    func address(_ disk: Skiff_Agent_V1_SCSIDiskAddress) -> String? {
        guard let host = host(of: disk.controller) else { return nil }
        let path = "\(sys)/bus/scsi/devices/\(host):0:\(disk.target):\(disk.lun)"
        return access(path, F_OK) == 0 ? path : nil
    }

    /// The block device of the disk (`sda`), waiting for it to show and open: the kernel
    /// makes the node before the disk is live, and opening it (or mounting it) in between
    /// fails with ENXIO.
    func device(_ disk: Skiff_Agent_V1_SCSIDiskAddress) async throws(AgentError) -> String {
        let deadline = ContinuousClock.now + .milliseconds(Int(disk.timeoutMs))
        while true {
            if let address = address(disk), let dir = opendir(address + "/block") {
                defer { closedir(dir) }
                while let entry = readdir(dir) {
                    let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
                    if !name.hasPrefix("."), Self.opens("\(dev)/\(name)") { return name }
                }
            }
            if ContinuousClock.now >= deadline {
                throw .notFound("no SCSI disk at controller \(disk.controller) target \(disk.target) LUN \(disk.lun) in the guest")
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Whether the block device at `path` opens (read-only, without waiting for media).
    static func opens(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return false }
        close(fd)
        return true
    }

    /// Mounts the disk the request names (none for an empty path); its device and numbers.
    func mount(_ request: Skiff_Agent_V1_MountSCSIDiskRequest) async throws(AgentError) -> Skiff_Agent_V1_MountSCSIDiskResponse {
        guard request.path.isEmpty || (request.path.hasPrefix("/") && !request.fstype.isEmpty) else {
            throw .invalidArgument("a disk mount needs an absolute path and a filesystem type")
        }
        guard request.disk.timeoutMs <= 60_000 else { throw .invalidArgument("timeout_ms \(request.disk.timeoutMs) is above 60000") }
        let device = try await device(request.disk)
        let numbers = try numbers(of: device)
        let answer = Skiff_Agent_V1_MountSCSIDiskResponse.with { $0.device = device; $0.major = numbers.major; $0.minor = numbers.minor }
        if request.path.isEmpty || Self.mountSource(of: request.path) == "\(dev)/\(device)" { return answer }
        try Mounts.mount(source: "\(dev)/\(device)", target: request.path, fstype: request.fstype,
                         options: request.options + (request.readOnly ? ["ro"] : []))
        return answer
    }

    /// The device numbers of block device `name`, from /sys/class/block/NAME/dev ("8:16").
    func numbers(of name: String) throws(AgentError) -> (major: UInt32, minor: UInt32) {
        let text = readTextFile("\(sys)/class/block/\(name)/dev") ?? ""
        let parts = text.split(whereSeparator: { $0 == "\n" || $0 == " " }).first?.split(separator: ":") ?? []
        guard parts.count == 2, let major = UInt32(parts[0]), let minor = UInt32(parts[1]) else {
            throw .notFound("no device numbers for block device \(name)")
        }
        return (major, minor)
    }

    /// Lets the disk go: the kernel flushes and forgets it. Not there: done.
    func eject(_ disk: Skiff_Agent_V1_SCSIDiskAddress) throws(AgentError) {
        guard let address = address(disk) else { return }
        let fd = open(address + "/delete", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return }
            throw .errno("eject \(address)")
        }
        defer { close(fd) }
        guard write(fd, "1", 1) == 1 else { throw .errno("eject \(address)") }
    }

    /// What is mounted at `path`, per /proc/self/mounts.
    static func mountSource(of path: String) -> String? {
        for line in (readTextFile("/proc/self/mounts") ?? "").split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count > 1, fields[1] == path { return String(fields[0]) }
        }
        return nil
    }
}
