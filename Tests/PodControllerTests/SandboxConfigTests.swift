import SkiffSupport
import Testing
@testable import PodController

/// The pod's VM settings from the runtime's config file and the `io.skiff.*` annotations.
@Suite struct SandboxConfigTests {
    @Test func annotationsSetEachSettingAndOthersAreIgnored() throws {
        let config = try SandboxConfig.from(annotations: [
            "io.skiff.memory-mib": "512", "io.skiff.vcpus": "2", "io.skiff.accel": "tcg",
            "io.skiff.kernel": "/k", "io.skiff.initrd": "/i", "io.skiff.boot-timeout": "30",
            "io.kubernetes.cri.sandbox-id": "pod1",
        ])
        #expect(config.memoryMiB == 512)
        #expect(config.vcpus == 2)
        #expect(config.accelerator == .tcg)
        #expect(config.kernel == "/k" && config.initrd == "/i")
        #expect(config.bootTimeout == .seconds(30))
        #expect(config.rootfs == .ninep, "the host's overlay unless asked")
        let block = try SandboxConfig.from(annotations: ["io.skiff.rootfs": "block", "io.skiff.scratch-mib": "64"])
        #expect(block.rootfs == .block && block.scratchMiB == 64)
        #expect(block.vmOptions(imageDirectory: nil).disksEarly, "a pod of block roots loads the disks' filesystems at boot")
        let ports = try SandboxConfig.from(annotations: ["io.skiff.pci-ports": "9"])
        #expect(config.pciRootPorts == 4 && ports.pciRootPorts == 9 && ports.vmOptions(imageDirectory: nil).pciRootPorts == 9)
        let guestKernel = try SandboxConfig.from(annotations: ["io.skiff.vfio-mode": "guest-kernel"])
        #expect(config.vfioMode == "vfio" && guestKernel.vfioMode == "guest-kernel")
        let booted = try SandboxConfig.from(annotations: ["io.skiff.templates": "off"])
        #expect(config.vmOptions(imageDirectory: nil).templates, "a VM is a copy of a template unless asked")
        #expect(!booted.vmOptions(imageDirectory: nil).templates)
        let merged = try SandboxConfig.from(annotations: ["io.skiff.ksm": "on"])
        #expect(!config.vmOptions(imageDirectory: nil).memoryMerging, "KSM is an opt-in")
        #expect(merged.vmOptions(imageDirectory: nil).memoryMerging)
    }

    @Test(arguments: [
        ("io.skiff.memory-mib", "32"), ("io.skiff.memory-mib", "lots"), ("io.skiff.vcpus", "0"), ("io.skiff.templates", "yes"), ("io.skiff.ksm", "1"),
        ("io.skiff.accel", "hvf"), ("io.skiff.kernel", "relative"), ("io.skiff.boot-timeout", "0"),
        ("io.skiff.no-such-setting", "1"), ("io.skiff.rootfs", "nfs"), ("io.skiff.scratch-mib", "8"),
        ("io.skiff.pci-ports", "17"), ("io.skiff.pci-ports", "-1"), ("io.skiff.vfio-mode", "passthrough"),
    ])
    func badOrUnknownAnnotationsAreRefused(key: String, value: String) {
        #expect(throws: SkiffError.self) { try SandboxConfig.from(annotations: [key: value]) }
    }

    @Test func theConfigFileGivesDefaultsThatAnnotationsOverride() throws {
        let file = """
            # Skiff's VM settings
            [vm]
            memory-mib = 384
            vcpus = 2   # two
            accel = "tcg"
            """
        let base = try SandboxConfig.from(configFile: file, path: "/etc/skiff.toml")
        #expect(base.memoryMiB == 384 && base.vcpus == 2 && base.accelerator == .tcg)
        let config = try SandboxConfig.from(annotations: ["io.skiff.vcpus": "3"], base: base)
        #expect(config.memoryMiB == 384 && config.vcpus == 3)
    }

    @Test func aBadConfigFileLineIsRefusedWithItsPlace() {
        #expect(throws: SkiffError.invalidArgument("/etc/skiff.toml:2: expected name = value")) {
            try SandboxConfig.from(configFile: "vcpus = 1\nnonsense\n", path: "/etc/skiff.toml")
        }
        #expect(throws: SkiffError.self) { try SandboxConfig.from(configFile: "colour = blue", path: "/f") }
    }
}
