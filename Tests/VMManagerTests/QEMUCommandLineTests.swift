import Foundation
import Testing
@testable import VMManager

@Suite struct QEMUCommandLineTests {
    private let base = VMBuilder(id: "pod1", stateDirectory: "/run/skiff/pod1", kernel: "/k/vmlinuz", initrd: "/k/initrd")

    @Test func defaultDocumentDerivesTheFullTCGCommandLine() throws {
        let args = QEMUCommandLine.arguments(for: try base.build())
        #expect(args == [
            "-name", "skiff-pod1", "-machine", "q35,sata=off,smbus=off,vmport=off,mem-merge=off", "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
            "-S", "-pidfile", "/run/skiff/pod1/qemu.pid",
            "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
            "-accel", "tcg,tb-size=32", "-cpu", "max,-erms,-fsrm",
            "-bios", "/usr/share/qemu/qboot.rom",
            "-m", "256", "-smp", "1",
            "-kernel", "/k/vmlinuz", "-initrd", "/k/initrd", "-append", "console=ttyS0 quiet panic=-1 init_on_alloc=0 cryptomgr.notests tsc=reliable no_timer_check i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd",
            "-chardev", "socket,id=qmp,path=/run/skiff/pod1/qmp.sock,server=on,wait=off", "-mon", "chardev=qmp,mode=control",
            "-chardev", "socket,id=qmpfd,path=/run/skiff/pod1/qmp-fd.sock,server=on,wait=off", "-mon", "chardev=qmpfd,mode=control",
            "-chardev", "file,id=console,path=/run/skiff/pod1/console.log", "-serial", "chardev:console",
            "-device", "virtio-serial-pci,id=vser0",
            "-chardev", "socket,id=agent,path=/run/skiff/pod1/agent.sock,server=on,wait=off",
            "-device", "virtserialport,bus=vser0.0,chardev=agent,id=agentport,name=skiff.agent",
            "-chardev", "socket,id=stdio,path=/run/skiff/pod1/stdio.sock,server=on,wait=off",
            "-device", "virtserialport,bus=vser0.0,chardev=stdio,id=stdioport,name=skiff.stdio",
            "-device", "virtio-scsi-pci,id=scsi0",
            "-device", "virtio-balloon-pci,id=balloon0,free-page-reporting=on",
            "-device", "pcie-root-port,id=hp0,bus=pcie.0,chassis=1", "-device", "pcie-root-port,id=hp1,bus=pcie.0,chassis=2",
            "-device", "pcie-root-port,id=hp2,bus=pcie.0,chassis=3", "-device", "pcie-root-port,id=hp3,bus=pcie.0,chassis=4",
        ])
    }

    @Test func kvmUsesTheHostCPUAndNoTranslationCache() throws {
        let args = QEMUCommandLine.arguments(for: try base.accelerator(.kvm).build())
        #expect(args.contains(subsequence: ["-accel", "kvm", "-cpu", "host"]))
        #expect(!args.contains { $0.hasPrefix("tcg") })
    }

    @Test func memoryVCPUsControllersAndShareAppearAsAsked() throws {
        let document = try base.memory(mib: 1024).vcpus(4).scsiControllers(2)
            .share(hostPath: "/run/skiff/pod1/share", tag: "skiffshare").build()
        let args = QEMUCommandLine.arguments(for: document)
        #expect(args.contains(subsequence: ["-m", "1024", "-smp", "4"]))
        #expect(args.contains(subsequence: ["-device", "virtio-scsi-pci,id=scsi0", "-device", "virtio-scsi-pci,id=scsi1"]))
        #expect(args.contains(subsequence: [
            "-fsdev", "local,id=fs0,path=/run/skiff/pod1/share,security_model=none",
            "-device", "virtio-9p-pci,id=share0,fsdev=fs0,mount_tag=skiffshare",
        ]))
    }

    @Test func aVirtualIOMMUComesBeforeEveryPCIDeviceAndTheGuestsOwnDriversBypassIt() throws {
        let args = QEMUCommandLine.arguments(for: try base.virtualIOMMU(true).build())
        let iommu = try #require(args.firstIndex(of: "intel-iommu,caching-mode=on"))
        #expect(args[iommu - 1] == "-device")
        #expect(args.firstIndex(of: "virtio-serial-pci,id=vser0").map { $0 > iommu } == true)
        #expect(args.last { $0.hasPrefix("console=") }?.split(separator: " ").contains("iommu.passthrough=1") == true)
        let without = QEMUCommandLine.arguments(for: try base.virtualIOMMU(true).virtualIOMMU(false).build())
        #expect(!without.contains("intel-iommu,caching-mode=on") && !without.contains { $0.contains("iommu.passthrough") })
    }

    @Test func aGuestRootIsAReadOnlySharedFileMappingOnVirtioPmemWithRoomForIt() throws {
        let args = QEMUCommandLine.arguments(for: try base.guestRoot(.init(path: "/g/root.erofs", sizeBytes: 32 << 20)).build())
        #expect(args.contains(subsequence: ["-m", "256,slots=1,maxmem=288M"]))
        #expect(args.contains(subsequence: [
            "-object", "memory-backend-file,id=guestroot,mem-path=/g/root.erofs,size=33554432,share=on,readonly=on",
            "-device", "virtio-pmem-pci,memdev=guestroot,id=guestroot0",
        ]))
        #expect(args.last { $0.hasPrefix("console=") }?.split(separator: " ").contains("swiotlb=1024") == true,
                "device memory above 4 GiB would cost 64 MiB of bounce buffers")
        #expect(throws: VMManagerError.self, "Linux adds device memory in 2 MiB sections") {
            try base.guestRoot(.init(path: "/g/root.erofs", sizeBytes: 33 << 20)).build()
        }
    }

    @Test func aTemplatesRAMIsASharedFileAndACopyMapsItPrivateAndWaitsForItsState() throws {
        let document = try base.build()
        let template = QEMUCommandLine.arguments(for: document, launch: .template(memoryFile: "/t/memory"))
        #expect(template.contains(subsequence: ["-machine", "q35,sata=off,smbus=off,vmport=off,mem-merge=off,memory-backend=guestram"]))
        #expect(template.contains(subsequence: ["-object", "memory-backend-file,id=guestram,size=256M,mem-path=/t/memory,share=on"]))
        #expect(!template.contains("-incoming"))
        let copy = QEMUCommandLine.arguments(for: document, launch: .copy(memoryFile: "/t/memory"))
        #expect(copy.contains(subsequence: ["-object", "memory-backend-file,id=guestram,size=256M,mem-path=/t/memory,share=off"]))
        #expect(copy.contains(subsequence: ["-incoming", "defer"]))
        // A discard would punch a hole in the template every copy maps.
        for args in [template, copy] {
            #expect(args.contains("virtio-balloon-pci,id=balloon0"), "no free page reporting")
        }
        let boot = QEMUCommandLine.arguments(for: document)
        #expect(boot.contains("virtio-balloon-pci,id=balloon0,free-page-reporting=on"))
        #expect(!boot.contains { $0.contains("guestram") } && !boot.contains("-incoming"))
    }

    @Test func guestRAMIsMergeableOnlyWhenThePodOptsIn() throws {
        #expect(QEMUCommandLine.arguments(for: try base.build()).contains("q35,sata=off,smbus=off,vmport=off,mem-merge=off"))
        #expect(QEMUCommandLine.arguments(for: try base.memoryMerging(true).build()).contains("q35,sata=off,smbus=off,vmport=off,mem-merge=on"))
    }

    @Test func vsockChannelAddsAVhostVsockDeviceInsteadOfTheSerialPort() throws {
        let args = QEMUCommandLine.arguments(for: try base.agentChannel(.vsock(guestCID: 42, controlPort: 1024, stdioPort: 1025)).build())
        #expect(args.contains(subsequence: ["-device", "vhost-vsock-pci,id=vsock0,guest-cid=42"]))
        #expect(!args.contains("virtio-serial-pci,id=vser0"))
    }

    @Test func invalidDocumentsAreRefusedWithTheReason() {
        #expect(throws: VMManagerError.self) { try VMBuilder(id: "../x", stateDirectory: "/s", kernel: "k", initrd: "i").build() }
        #expect(throws: VMManagerError.self) { try base.memory(mib: 16).build() }
        #expect(throws: VMManagerError.self) { try base.vcpus(0).build() }
        #expect(throws: VMManagerError.self) { try base.share(hostPath: "/a,b", tag: "t").build() }
        #expect(throws: VMManagerError.self) { try base.share(hostPath: "/a", tag: String(repeating: "t", count: 40)).build() }
    }

    @Test func documentSurvivesAJSONRoundTrip() throws {
        let document = try base.share(hostPath: "/s", tag: "t").build()
        let data = try JSONEncoder().encode(document)
        #expect(try JSONDecoder().decode(VMDocument.self, from: data) == document)
    }
}

extension Array where Element: Equatable {
    func contains(subsequence: [Element]) -> Bool {
        guard subsequence.count <= count else { return false }
        return (0...(count - subsequence.count)).contains { Array(self[$0..<($0 + subsequence.count)]) == subsequence }
    }
}
