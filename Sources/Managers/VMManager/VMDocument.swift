/// What a utility VM *is*: written once when the VM is created and never changed by running it.
/// The QEMU command line is derived from it (`QEMUCommandLine`), so two equal documents give the
/// same VM. Build one with `VMBuilder`.
public struct VMDocument: Sendable, Codable, Equatable {
    /// How guest instructions run: hardware virtualization or QEMU's software emulator.
    public enum Accelerator: String, Sendable, Codable, Equatable {
        case kvm
        case tcg
    }

    /// A named virtio-serial port, backed on the host by a unix socket QEMU listens on.
    public struct SerialPort: Sendable, Codable, Equatable {
        public var socketPath: String
        public var name: String
        public init(socketPath: String, name: String) {
            self.socketPath = socketPath
            self.name = name
        }
    }

    /// How the host reaches the guest agent: a control connection (ttrpc) and a stdio
    /// connection (the multiplexed process streams).
    public enum AgentChannel: Sendable, Codable, Equatable {
        /// Two virtio-serial ports.
        case virtioSerial(control: SerialPort, stdio: SerialPort)
        /// vsock ports at the guest's context id (where the host has /dev/vhost-vsock).
        case vsock(guestCID: UInt32, controlPort: UInt32, stdioPort: UInt32)
    }

    /// A host directory exported to the guest over virtio-9p under `tag`.
    public struct SharedDirectory: Sendable, Codable, Equatable {
        public var hostPath: String
        public var tag: String
        public init(hostPath: String, tag: String) {
            self.hostPath = hostPath
            self.tag = tag
        }
    }

    public var id: String
    public var memoryMiB: Int
    public var vcpus: Int
    public var kernel: String
    public var initrd: String
    /// Kernel command-line arguments, in order.
    public var kernelArguments: [String]
    public var accelerator: Accelerator
    /// Translation-cache size for TCG, in MiB; nil leaves QEMU's default.
    public var tcgTranslationCacheMiB: Int?
    public var agentChannel: AgentChannel
    /// Number of virtio-scsi controllers (`scsi0`, `scsi1`, ...) for hot-plugged disks.
    public var scsiControllers: Int
    public var sharedDirectory: SharedDirectory?
    /// The guest's serial console is appended to this file.
    public var consoleLog: String
    /// The QMP socket QEMU listens on.
    public var qmpSocket: String
    /// QEMU writes its pid here, so cleanup finds the process even if its starter died
    /// before recording it.
    public var pidFile: String
    /// QEMU's own stdout and stderr (its error messages when it refuses to start).
    public var qemuLog: String
    /// A virtio-balloon device, so the guest can return free memory and be resized.
    public var balloon: Bool
    /// Firmware image; qboot boots a kernel directly and faster than SeaBIOS.
    public var firmware: String?
    /// PCIe root ports (`hp0`, `hp1`, ...) kept empty for hot-plugged PCI devices and NICs:
    /// the q35 root bus itself takes no hot-plug.
    public var pciHotplugSlots: Int = 4
    /// An emulated Intel IOMMU (QEMU's `intel-iommu`, with `caching-mode=on`, which QEMU asks
    /// for before it assigns a host device behind it): the guest then puts every PCI device in
    /// an IOMMU group, so an assigned device can be bound to vfio-pci in the guest and used by a
    /// container through /dev/vfio/GROUP as it would under runc. The guest runs its own drivers
    /// with passthrough DMA (`iommu.passthrough=1`): only VFIO users get translated domains.
    public var virtualIOMMU = false
    /// Whether QEMU marks guest RAM mergeable (`-machine mem-merge=`, madvise MADV_MERGEABLE), so
    /// the host's KSM may merge identical pages across VMs (Documentation/admin-guide/mm/ksm.rst).
    /// Off by default: merging costs the host's CPU a scan and makes page contents observable
    /// by timing; a pod opts in.
    public var memoryMerging = false
    /// The guest's root image, mapped read-only into guest memory as a virtio-pmem device
    /// (QEMU's docs/virtio-pmem.rst): the guest reads it through DAX, straight from the host's
    /// page cache, which every VM booted from that image shares. `sizeBytes` is the file's
    /// size, a multiple of 2 MiB (Linux adds device memory in 2 MiB subsections).
    public struct GuestRoot: Sendable, Codable, Equatable {
        public var path: String
        public var sizeBytes: Int
        public init(path: String, sizeBytes: Int) {
            self.path = path
            self.sizeBytes = sizeBytes
        }
    }
    public var guestRoot: GuestRoot?
    /// The guest kernel's argument that keeps its bounce buffers at 2 MiB.
    public static let smallBounceBuffersArgument = "swiotlb=1024"
    /// The guest kernel's argument that keeps its own drivers' DMA untranslated.
    public static let iommuPassthroughArgument = "iommu.passthrough=1"
    /// vCPUs the VM may grow to by hot-adding; nil means `vcpus` (no growth).
    public var maxVCPUs: Int?
    /// A second QMP monitor, for the calls that pass a descriptor (getfd with SCM_RIGHTS and
    /// the netdev_add that names it, which must share one monitor); nil: none.
    public var qmpFDSocket: String?
    /// Where templates of this VM's shape are kept (`VMTemplateStore`): the VM starts as a
    /// copy of a booted guest instead of booting, and the first VM of a shape makes the
    /// template. nil: every start is a boot.
    public var templateDirectory: String?

    public init(
        id: String, memoryMiB: Int, vcpus: Int, kernel: String, initrd: String,
        kernelArguments: [String], accelerator: Accelerator, tcgTranslationCacheMiB: Int?,
        agentChannel: AgentChannel, scsiControllers: Int, sharedDirectory: SharedDirectory?,
        consoleLog: String, qmpSocket: String, pidFile: String, qemuLog: String, balloon: Bool, firmware: String?
    ) {
        self.id = id
        self.memoryMiB = memoryMiB
        self.vcpus = vcpus
        self.kernel = kernel
        self.initrd = initrd
        self.kernelArguments = kernelArguments
        self.accelerator = accelerator
        self.tcgTranslationCacheMiB = tcgTranslationCacheMiB
        self.agentChannel = agentChannel
        self.scsiControllers = scsiControllers
        self.sharedDirectory = sharedDirectory
        self.consoleLog = consoleLog
        self.qmpSocket = qmpSocket
        self.pidFile = pidFile
        self.qemuLog = qemuLog
        self.balloon = balloon
        self.firmware = firmware
    }
}
