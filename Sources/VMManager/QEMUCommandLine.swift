/// Derives QEMU's argument vector from a `VMDocument`. Pure: the same document always gives
/// the same arguments, which the tests pin.
///
/// The machine is `pc` with ACPI (PCI hot-plug works there), no default devices, no display,
/// and `-no-reboot` so a guest reboot or panic ends QEMU instead of looping. QEMU starts with
/// its vCPUs stopped (`-S`): the VM manager connects QMP first, so it sees every event, then
/// lets the guest run with `cont`.
public enum QEMUCommandLine {
    public static let binary = "qemu-system-x86_64"
    /// Device ids of the agent's two serial ports, named in QEMU's VSERPORT_CHANGE events.
    public static let agentPortID = "agentport"
    public static let stdioPortID = "stdioport"

    public static func arguments(for d: VMDocument) -> [String] {
        var args = ["-name", "skiff-\(d.id)", "-machine", "pc", "-nodefaults", "-no-user-config",
                    "-nographic", "-no-reboot", "-S", "-pidfile", d.pidFile]
        switch d.accelerator {
        case .kvm:
            args += ["-accel", "kvm", "-cpu", "host"]
        case .tcg:
            args += ["-accel", d.tcgTranslationCacheMiB.map { "tcg,tb-size=\($0)" } ?? "tcg", "-cpu", "max"]
        }
        if let firmware = d.firmware { args += ["-bios", firmware] }
        args += ["-m", "\(d.memoryMiB)", "-smp", "\(d.vcpus)"]
        args += ["-kernel", d.kernel, "-initrd", d.initrd, "-append", d.kernelArguments.joined(separator: " ")]
        args += ["-chardev", "socket,id=qmp,path=\(d.qmpSocket),server=on,wait=off", "-mon", "chardev=qmp,mode=control"]
        args += ["-chardev", "file,id=console,path=\(d.consoleLog)", "-serial", "chardev:console"]
        switch d.agentChannel {
        case let .virtioSerial(control, stdio):
            args += ["-device", "virtio-serial-pci,id=vser0",
                     "-chardev", "socket,id=agent,path=\(control.socketPath),server=on,wait=off",
                     "-device", "virtserialport,bus=vser0.0,chardev=agent,id=\(agentPortID),name=\(control.name)",
                     "-chardev", "socket,id=stdio,path=\(stdio.socketPath),server=on,wait=off",
                     "-device", "virtserialport,bus=vser0.0,chardev=stdio,id=\(stdioPortID),name=\(stdio.name)"]
        case let .vsock(cid, _, _):
            args += ["-device", "vhost-vsock-pci,id=vsock0,guest-cid=\(cid)"]
        }
        for index in 0..<d.scsiControllers {
            args += ["-device", "virtio-scsi-pci,id=scsi\(index)"]
        }
        if let share = d.sharedDirectory {
            args += ["-fsdev", "local,id=fs0,path=\(share.hostPath),security_model=none",
                     "-device", "virtio-9p-pci,id=share0,fsdev=fs0,mount_tag=\(share.tag)"]
        }
        if d.balloon { args += ["-device", "virtio-balloon-pci,id=balloon0,free-page-reporting=on"] }
        args += ["-device", "virtio-rng-pci"]
        return args
    }
}
