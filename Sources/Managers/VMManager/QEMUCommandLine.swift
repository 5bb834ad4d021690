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

    /// The CPU model under TCG: every feature QEMU can emulate except ERMS and FSRM. With
    /// those, the guest kernel copies memory with `rep movsb`, which TCG runs a byte at a
    /// time; without them it copies eight bytes a step. Unpacking the initramfs takes half as
    /// long (0.21 s against 0.10 s for 29 MB), and so does every copy to and from user space.
    public static let tcgCPUModel = "max,-erms,-fsrm"

    /// QEMU's own seccomp filter (`-sandbox`, QEMU's docs/system/invocation: qemu-options
    /// "-sandbox"), on for every VM: obsolete system calls, gaining privileges (setuid and
    /// kin), spawning processes (fork, execve) and resource control (scheduler and affinity
    /// changes) are denied to everything QEMU runs, a guest that escapes into QEMU included.
    /// Nothing Skiff asks of QEMU needs any of them: taps and disks come as paths or
    /// descriptors, never through helper scripts.
    public static let sandbox = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"

    /// The id of hot-plug root port `slot`, the bus a hot-added PCI device goes on.
    public static func hotplugSlotID(_ slot: Int) -> String { "hp\(slot)" }

    /// How QEMU is started for a document: a plain boot, the boot of a template (guest RAM in
    /// a file QEMU maps shared, so the booted guest's memory lands there), or a copy of a
    /// template (its memory file mapped private, the device state read from the template by
    /// `migrate-incoming`, QEMU's docs/devel/migration.rst).
    public enum Launch: Sendable, Equatable {
        case boot
        case template(memoryFile: String)
        case copy(memoryFile: String)
    }

    /// The id of the guest RAM's memory backend when guest RAM is a file.
    static let guestRAMBackendID = "guestram"

    public static func arguments(for d: VMDocument, launch: Launch = .boot) -> [String] {
        var machine = "q35,sata=off,smbus=off,vmport=off,mem-merge=\(d.memoryMerging ? "on" : "off")"
        var ramBackend: [String] = []
        switch launch {
        case .boot: break
        case let .template(file), let .copy(file):
            let share = if case .template = launch { "on" } else { "off" }
            machine += ",memory-backend=\(guestRAMBackendID)"
            ramBackend = ["-object", "memory-backend-file,id=\(guestRAMBackendID),size=\(d.memoryMiB)M,mem-path=\(file),share=\(share)"]
        }
        // q35 rather than pc: its ACPI interrupt routing is a table, where pc's is an AML loop
        // that costs the boot 0.1 s per PCI device under emulation. No SATA, SMBus or vmport.
        var args = ["-name", "skiff-\(d.id)", "-machine", machine, "-nodefaults", "-no-user-config",
                    "-nographic", "-no-reboot", "-S", "-pidfile", d.pidFile] + ramBackend
        if case .copy = launch { args += ["-incoming", "defer"] }
        args += ["-sandbox", sandbox]
        switch d.accelerator {
        case .kvm:
            args += ["-accel", "kvm", "-cpu", "host"]
        case .tcg:
            args += ["-accel", d.tcgTranslationCacheMiB.map { "tcg,tb-size=\($0)" } ?? "tcg", "-cpu", tcgCPUModel]
        }
        if let firmware = d.firmware { args += ["-bios", firmware] }
        // A guest root is device memory: one slot, and room for it above the RAM.
        var memory = "\(d.memoryMiB)"
        if let root = d.guestRoot { memory += ",slots=1,maxmem=\(d.memoryMiB + root.sizeBytes >> 20)M" }
        args += ["-m", memory, "-smp", d.maxVCPUs.map { "\(d.vcpus),maxcpus=\($0)" } ?? "\(d.vcpus)"]
        args += ["-kernel", d.kernel, "-initrd", d.initrd, "-append", d.kernelArguments.joined(separator: " ")]
        args += ["-chardev", "socket,id=qmp,path=\(d.qmpSocket),server=on,wait=off", "-mon", "chardev=qmp,mode=control"]
        if let fdSocket = d.qmpFDSocket {
            args += ["-chardev", "socket,id=qmpfd,path=\(fdSocket),server=on,wait=off", "-mon", "chardev=qmpfd,mode=control"]
        }
        args += ["-chardev", "file,id=console,path=\(d.consoleLog)", "-serial", "chardev:console"]
        // Before every PCI device, so each is created behind it.
        if d.virtualIOMMU { args += ["-device", "intel-iommu,caching-mode=on"] }
        if let root = d.guestRoot {
            // readonly=on: QEMU opens and maps it read-only, so no guest can write the image
            // every VM reads, whose pages stay the page cache's. share=on: a migration with
            // x-ignore-shared leaves it out, so a template's state does not carry the image.
            args += ["-object", "memory-backend-file,id=guestroot,mem-path=\(root.path),size=\(root.sizeBytes),share=on,readonly=on",
                     "-device", "virtio-pmem-pci,memdev=guestroot,id=guestroot0"]
        }
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
        // Free page reporting discards what the guest reports free, and QEMU 7.2 discards a
        // file-backed page by punching a hole in the file: in a template's copy that would be
        // the template every copy maps. Copies (and templates) report nothing.
        if d.balloon { args += ["-device", "virtio-balloon-pci,id=balloon0" + (launch == .boot ? ",free-page-reporting=on" : "")] }
        for slot in 0..<d.pciHotplugSlots {
            args += ["-device", "pcie-root-port,id=\(hotplugSlotID(slot)),bus=pcie.0,chassis=\(slot + 1)"]
        }
        // No virtio-rng: the CPU's RDRAND seeds the guest's RNG at once, and each PCI device
        // costs the boot about 0.1 s of ACPI interrupt routing under emulation.
        return args
    }
}
