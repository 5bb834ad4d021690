import VMManager

/// What the service layer asks of a pod's VM, in its own terms; the VM controller turns it
/// into a VM document (QEMU's command line) itself, so nothing above it knows QEMU.
public struct VMOptions: Sendable, Equatable {
    /// How the guest's CPU runs: KVM, or QEMU's TCG emulation.
    public enum Accelerator: String, Sendable, Equatable { case kvm, tcg }

    /// Guest RAM in MiB.
    public var memoryMiB = 256
    public var vcpus = 1
    /// nil: probe (KVM when a real boot works, else TCG).
    public var accelerator: Accelerator?
    /// Absolute host paths overriding the guest image's kernel and initramfs.
    public var kernel: String?
    public var initrd: String?
    /// Where the guest image lives (nil: `$SKIFF_GUEST_DIR` or /var/lib/skiff/guest).
    public var imageDirectory: String?
    /// How long the guest agent may take to answer after QEMU starts.
    public var bootTimeout: Duration = .seconds(60)
    /// The pod's roots come on disks: the guest loads the disks' filesystems right after
    /// its boot rather than at the first disk mount (kernel argument `skiff.disks=early`).
    public var disksEarly = false
    /// PCIe root ports for hot-added PCI devices (assigned devices and the pod's NICs), 0 to 16.
    public var pciRootPorts = 4
    /// An emulated IOMMU, so a container can drive an assigned device through VFIO in the
    /// guest (`VMDocument.virtualIOMMU`); it costs the boot nothing measurable (2.00 s against
    /// 2.15 s to a guest's poweroff, medians of 10, TCG). Needs root ports to be of use.
    public var virtualIOMMU = true
    /// Start the VM as a copy of a booted template of its shape, kept in the guest image's
    /// `templates` directory (`VMTemplateStore`), instead of booting it: the first VM of a
    /// shape makes the template. The copy shares the template's memory through the host's
    /// page cache and runs on from where the template's agent opened its ports; the host then
    /// sets its clock and reseeds its random generator (SyncWithHost).
    public var templates = true
    /// Let the host's KSM merge this VM's guest RAM with other VMs' (`VMDocument.memoryMerging`),
    /// starting KSM when it is stopped (`HostKSM.ensureRunning`; it is never stopped).
    public var memoryMerging = false

    public init() {}
}

extension VMController {
    /// The Plan9 export every VM has: one directory of the state directory, shared under this
    /// tag (QEMU 7.2 cannot hot-add a 9p device).
    public static let shareTag = "skiffshare"
    /// The kernel argument that tells the agent the pod's roots come on disks.
    public static let disksEarlyArgument = "skiff.disks=early"

    /// Where the templates of VMs booted from `image` are kept: beside it, so a new image
    /// (`scripts/build-guest`, which empties the directory) starts afresh.
    static func templateDirectory(image: GuestImage) -> String {
        String(image.kernel[..<(image.kernel.lastIndex(of: "/") ?? image.kernel.startIndex)]) + "/templates"
    }

    /// Creates the VM from `options`: finds the guest image, chooses the accelerator, and
    /// records the VM document (see `createVM(_:)`). Throws InvalidArgument for options QEMU
    /// cannot take or a guest image that is not there.
    public func createVM(options: VMOptions) async throws(VMControllerError) {
        let document: VMDocument
        do {
            let image = try GuestImage.locate(directory: options.imageDirectory)
            let accelerator = await AcceleratorProbe().choose(forced: options.accelerator.map { $0 == .kvm ? .kvm : .tcg })
            let guest = GuestImage(kernel: options.kernel ?? image.kernel, initrd: options.initrd ?? image.initrd,
                                   floor: image.floor, root: image.root)
            document = try VMBuilder(id: id, stateDirectory: stateDirectory, image: guest)
                .memory(mib: options.memoryMiB).vcpus(options.vcpus).accelerator(accelerator)
                .share(hostPath: stateDirectory + "/share", tag: Self.shareTag)
                .appendingKernelArguments(options.disksEarly ? [Self.disksEarlyArgument] : [])
                .pciHotplugSlots(options.pciRootPorts)
                .virtualIOMMU(options.virtualIOMMU && options.pciRootPorts > 0)
                .templates(directory: options.templates ? Self.templateDirectory(image: image) : nil)
                .memoryMerging(options.memoryMerging)
                .build()
        } catch {
            throw .invalidArgument("\(error)")
        }
        if options.memoryMerging { startHostKSM() }
        try await createVM(document)
    }
}
