import AgentAPI
import Glibc
import SwiftProtobuf

/// PCI devices the host hot-adds on the VM's PCIe root ports, found under /sys: the device
/// behind a root port is a directory named by its address inside the port's own
/// (/sys/bus/pci/devices/PORT/DDDD:BB:SS.F), with `vendor`, `device` and a `driver` link once a
/// driver has bound (the kernel's sysfs-bus-pci ABI).
public struct PCIDevices: Sendable {
    public var sys: String
    /// Loads a driver's module by name (for `driver_override`); nil: the driver is built in.
    public var loadModule: @Sendable (String) -> Void

    public init(sys: String = "/sys", loadModule: @escaping @Sendable (String) -> Void = { _ in }) {
        self.sys = sys
        self.loadModule = loadModule
    }

    /// `DDDD:BB:SS.F` in hex digits, nothing else: a PCI address that is safe in a path.
    static func isAddress(_ text: String) -> Bool {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2 else { return false }
        let slot = parts[2].split(separator: ".", omittingEmptySubsequences: false)
        guard slot.count == 2, slot[0].count == 2, slot[1].count == 1 else { return false }
        return (parts[0] + parts[1] + slot[0] + slot[1]).allSatisfy(\.isHexDigit)
    }

    /// Waits for the device behind the request's root port and its driver.
    func wait(_ request: Skiff_Agent_V1_WaitPCIDeviceRequest) async throws(AgentError) -> Skiff_Agent_V1_WaitPCIDeviceResponse {
        guard Self.isAddress(request.rootPort) else { throw .invalidArgument("root port \(request.rootPort) is not a PCI address") }
        guard request.timeoutMs <= 60_000 else { throw .invalidArgument("timeout_ms \(request.timeoutMs) is above 60000") }
        let override = request.driverOverride
        guard override.isEmpty || override.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
            throw .invalidArgument("driver \(override) is not a driver name")
        }
        let deadline = ContinuousClock.now + .milliseconds(Int(request.timeoutMs))
        var overridden = false
        while true {
            if let address = child(of: request.rootPort) {
                let dir = "\(sys)/bus/pci/devices/\(address)"
                if !override.isEmpty, !overridden {
                    overridden = true
                    loadModule(override)
                    try write(override, to: dir + "/driver_override")
                    if driver(dir) == nil { try write(address, to: "\(sys)/bus/pci/drivers_probe") }
                }
                if let driver = driver(dir), override.isEmpty || driver == override {
                    let group = driver == "vfio-pci" ? try vfioGroup(dir) : nil
                    return .with {
                        $0.address = address
                        $0.vendor = hexValue(dir + "/vendor")
                        $0.device = hexValue(dir + "/device")
                        $0.driver = driver
                        if let group { $0.vfioGroup = group }
                    }
                }
                if ContinuousClock.now >= deadline {
                    throw .failedPrecondition("PCI device \(address) behind \(request.rootPort) has no driver\(override.isEmpty ? "" : " \(override)") bound")
                }
            } else if ContinuousClock.now >= deadline {
                throw .notFound("no PCI device behind root port \(request.rootPort) in the guest")
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// The first device directory inside the root port's.
    func child(of port: String) -> String? {
        guard let dir = opendir("\(sys)/bus/pci/devices/\(port)") else { return nil }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if Self.isAddress(name) { return name }
        }
        return nil
    }

    /// The name of the driver bound to the device at `dir`, if any.
    func driver(_ dir: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink(dir + "/driver", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        let target = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return target.split(separator: "/").last.map(String.init)
    }

    /// The VFIO group of a device bound to vfio-pci: its IOMMU group (the last part of the
    /// device's `iommu_group` link) and the numbers of /dev/vfio/GROUP (/sys/class/vfio/GROUP/dev,
    /// `MAJOR:MINOR`). FailedPrecondition when the device has no IOMMU group (the VM has no
    /// virtual IOMMU), so vfio-pci gave it no group node.
    func vfioGroup(_ dir: String) throws(AgentError) -> Skiff_Agent_V1_VFIOGroup {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink(dir + "/iommu_group", &buffer, buffer.count - 1)
        let target = n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
        guard let name = target.split(separator: "/").last, let group = UInt32(name) else {
            throw .failedPrecondition("\(dir) is bound to vfio-pci but is in no IOMMU group (the VM has no virtual IOMMU)")
        }
        let numbers = (readTextFile("\(sys)/class/vfio/\(group)/dev") ?? "")
            .split(whereSeparator: { $0 == ":" || $0 == "\n" }).compactMap { UInt32($0) }
        guard numbers.count == 2 else { throw .failedPrecondition("VFIO group \(group) has no device node in the guest") }
        return .with {
            $0.group = group
            $0.major = numbers[0]
            $0.minor = numbers[1]
        }
    }

    private func hexValue(_ path: String) -> UInt32 {
        let text = (readTextFile(path) ?? "").split(whereSeparator: { $0 == "\n" || $0 == " " }).first ?? ""
        return UInt32(text.hasPrefix("0x") ? text.dropFirst(2) : text[...], radix: 16) ?? 0
    }

    private func write(_ text: String, to path: String) throws(AgentError) {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .errno("open \(path)") }
        defer { close(fd) }
        guard Glibc.write(fd, text, text.utf8.count) == text.utf8.count else { throw .errno("write \(path)") }
    }
}
