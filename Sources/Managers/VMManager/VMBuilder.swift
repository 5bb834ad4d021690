/// Builds a `VMDocument` from a VM's identity and a state directory, with Skiff's defaults:
/// 256 MiB, one vCPU, a virtio-serial agent port, one SCSI controller, the console logged in
/// the state directory. Each setter returns a new builder, so a base can be shared.
///
///     let document = try VMBuilder(id: "pod1", stateDirectory: dir, kernel: k, initrd: i)
///         .memory(mib: 512).vcpus(2).accelerator(.tcg)
///         .share(hostPath: dir + "/share", tag: "skiffshare")
///         .build()
public struct VMBuilder: Sendable {
    /// The virtio-serial port names the agent looks for in the guest.
    public static let agentPortName = "skiff.agent"
    public static let stdioPortName = "skiff.stdio"

    /// The guest kernel's command line. Besides the console and `panic=-1` (a panic ends the
    /// VM at once), each flag removes boot work a utility VM does not need; measured under TCG
    /// with the boot floor, together they take the guest from about 2.2 s to 1.8 s of uptime.
    /// (ACPI interrupt routing stays: without it the balloon, which has no MSI-X, gets an
    /// edge-triggered interrupt and never hears from the host. On q35 it is cheap.)
    /// - `cryptomgr.notests`: no self-tests of the kernel's crypto algorithms (0.3 s).
    /// - `tsc=reliable no_timer_check`: no clocksource watchdog or timer check in a VM.
    /// - `i8042.*`: no probing for a PS/2 keyboard or mouse.
    /// - `init_on_alloc=0`: pages are not zeroed twice.
    public static let defaultKernelArguments = [
        "console=ttyS0", "quiet", "panic=-1", "init_on_alloc=0", "cryptomgr.notests",
        "tsc=reliable", "no_timer_check", "i8042.noaux", "i8042.nomux", "i8042.nopnp", "i8042.dumbkbd",
    ]

    private var document: VMDocument

    public init(id: String, stateDirectory: String, kernel: String, initrd: String) {
        document = VMDocument(
            id: id, memoryMiB: 256, vcpus: 1, kernel: kernel, initrd: initrd,
            kernelArguments: Self.defaultKernelArguments,
            accelerator: .tcg, tcgTranslationCacheMiB: 32,
            agentChannel: .virtioSerial(
                control: .init(socketPath: stateDirectory + "/agent.sock", name: Self.agentPortName),
                stdio: .init(socketPath: stateDirectory + "/stdio.sock", name: Self.stdioPortName)),
            scsiControllers: 1, sharedDirectory: nil,
            consoleLog: stateDirectory + "/console.log", qmpSocket: stateDirectory + "/qmp.sock",
            pidFile: stateDirectory + "/qemu.pid", qemuLog: stateDirectory + "/qemu.log", balloon: true,
            firmware: "/usr/share/qemu/qboot.rom")
        document.qmpFDSocket = stateDirectory + "/qmp-fd.sock"
    }

    /// A builder for `image`: its kernel and initramfs, and its root image when it has one.
    public init(id: String, stateDirectory: String, image: GuestImage) {
        self.init(id: id, stateDirectory: stateDirectory, kernel: image.kernel, initrd: image.initrd)
        self = guestRoot(image.root)
    }

    public func memory(mib: Int) -> VMBuilder { with { $0.memoryMiB = mib } }
    /// Maps an erofs image into the VM as its root (`VMDocument.guestRoot`); nil: none.
    /// The image is device memory above 4 GiB, so the guest would set aside 64 MiB of bounce
    /// buffers (swiotlb, zeroed at boot, so resident on the host) for devices that cannot
    /// reach it; none of the VM's devices needs them, and 2 MiB are kept for an assigned one
    /// that might (`swiotlb=1024`, in 2 KiB slabs; Documentation/admin-guide/kernel-parameters).
    public func guestRoot(_ root: VMDocument.GuestRoot?) -> VMBuilder {
        with {
            $0.guestRoot = root
            $0.kernelArguments.removeAll { $0 == VMDocument.smallBounceBuffersArgument }
            if root != nil { $0.kernelArguments.append(VMDocument.smallBounceBuffersArgument) }
        }
    }
    public func vcpus(_ count: Int) -> VMBuilder { with { $0.vcpus = count } }
    public func accelerator(_ accelerator: VMDocument.Accelerator) -> VMBuilder { with { $0.accelerator = accelerator } }
    public func tcgTranslationCache(mib: Int?) -> VMBuilder { with { $0.tcgTranslationCacheMiB = mib } }
    public func kernelArguments(_ arguments: [String]) -> VMBuilder { with { $0.kernelArguments = arguments } }
    public func appendingKernelArguments(_ arguments: [String]) -> VMBuilder { with { $0.kernelArguments += arguments } }
    public func agentChannel(_ channel: VMDocument.AgentChannel) -> VMBuilder { with { $0.agentChannel = channel } }
    public func scsiControllers(_ count: Int) -> VMBuilder { with { $0.scsiControllers = count } }
    public func share(hostPath: String, tag: String) -> VMBuilder {
        with { $0.sharedDirectory = VMDocument.SharedDirectory(hostPath: hostPath, tag: tag) }
    }
    public func firmware(_ path: String?) -> VMBuilder { with { $0.firmware = path } }
    public func balloon(_ enabled: Bool) -> VMBuilder { with { $0.balloon = enabled } }
    public func pciHotplugSlots(_ count: Int) -> VMBuilder { with { $0.pciHotplugSlots = count } }
    /// Gives the VM an emulated IOMMU (see `VMDocument.virtualIOMMU`) and tells the guest's
    /// own drivers to bypass it.
    public func virtualIOMMU(_ enabled: Bool) -> VMBuilder {
        with {
            guard enabled != $0.virtualIOMMU else { return }
            $0.virtualIOMMU = enabled
            if enabled { $0.kernelArguments.append(VMDocument.iommuPassthroughArgument) }
            else { $0.kernelArguments.removeAll { $0 == VMDocument.iommuPassthroughArgument } }
        }
    }
    /// Marks guest RAM mergeable for the host's KSM (`VMDocument.memoryMerging`).
    public func memoryMerging(_ enabled: Bool) -> VMBuilder { with { $0.memoryMerging = enabled } }
    /// Keeps templates of this VM's shape in `directory` (nil: every start boots).
    public func templates(directory: String?) -> VMBuilder { with { $0.templateDirectory = directory } }
    /// Lets the VM grow to `count` vCPUs by hot-adding (`QEMUVirtualMachine.setVCPUs`).
    public func maxVCPUs(_ count: Int?) -> VMBuilder { with { $0.maxVCPUs = count } }

    /// The document, after checking what QEMU would otherwise reject late and obscurely.
    public func build() throws(VMManagerError) -> VMDocument {
        let d = document
        guard !d.id.isEmpty, d.id.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
            throw .invalidConfiguration("VM id \(d.id.debugDescription) must be non-empty letters, digits, '-', '_' or '.'")
        }
        guard d.memoryMiB >= 64 else { throw .invalidConfiguration("memory \(d.memoryMiB) MiB is below the 64 MiB minimum") }
        guard (1...64).contains(d.vcpus) else { throw .invalidConfiguration("vCPUs \(d.vcpus) must be 1 to 64") }
        if let max = d.maxVCPUs, !(d.vcpus...64).contains(max) {
            throw .invalidConfiguration("maximum vCPUs \(max) must be \(d.vcpus) to 64")
        }
        guard (0...16).contains(d.pciHotplugSlots) else { throw .invalidConfiguration("PCI hot-plug slots \(d.pciHotplugSlots) must be 0 to 16") }
        guard (0...8).contains(d.scsiControllers) else { throw .invalidConfiguration("SCSI controllers \(d.scsiControllers) must be 0 to 8") }
        guard !d.kernel.isEmpty, !d.initrd.isEmpty else { throw .invalidConfiguration("kernel and initrd are required") }
        if let root = d.guestRoot, root.sizeBytes <= 0 || root.sizeBytes % (2 << 20) != 0 {
            throw .invalidConfiguration("guest root image \(root.path) is \(root.sizeBytes) bytes, not a multiple of 2 MiB (build it with scripts/build-guest)")
        }
        if let share = d.sharedDirectory {
            guard !share.tag.isEmpty, share.tag.utf8.count <= 31, !share.tag.contains(",") else {
                throw .invalidConfiguration("9p tag \(share.tag.debugDescription) must be 1 to 31 bytes without ','")
            }
        }
        for path in [d.kernel, d.initrd, d.consoleLog, d.qmpSocket, d.pidFile] + (d.qmpFDSocket.map { [$0] } ?? []) + (d.sharedDirectory.map { [$0.hostPath] } ?? []) where path.contains(",") {
            throw .invalidConfiguration("path \(path.debugDescription) contains ',', which QEMU options cannot carry")
        }
        return d
    }

    private func with(_ change: (inout VMDocument) -> Void) -> VMBuilder {
        var copy = self
        change(&copy.document)
        return copy
    }
}
