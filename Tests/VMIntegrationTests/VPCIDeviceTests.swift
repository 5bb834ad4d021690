import Foundation
import Glibc
import Testing
import VMController
import VMManager

/// The vPCI sub-controller against a booted VM, with QEMU's emulated PCI devices standing in
/// for host devices (these machines have no IOMMU, so no real VFIO): each goes the same path a
/// `vfio-pci` device would (hot-add on a root port, the guest waits behind that port for the
/// device and its driver, removal waits for the guest to let it go).
@Suite(.serialized, .timeLimit(.minutes(3))) struct VPCIDeviceTests {
    @Test func anEmulatedDeviceIsAssignedBoundInTheGuestAndRemoved() async throws {
        try await withBootedVM("vpci") { vm, vpci in
            // QEMU's `edu` (1234:11e8) has no driver of its own: the guest binds it to pci-stub.
            let id = try await vpci.reserve(.init(identity: "edu-0", driver: "edu", guestDriver: "pci-stub"))
            let seen = try await vpci.addToVM(id)
            #expect(seen.vendor == 0x1234 && seen.device == 0x11e8 && seen.driver == "pci-stub", "\(seen)")
            let inGuest = try await vm.execIntoHost(["sh", "-c", "cat /sys/bus/pci/devices/\(seen.address)/vendor; readlink /sys/bus/pci/devices/\(seen.address)/driver"])
            #expect(String(decoding: inGuest.stdout, as: UTF8.self).hasPrefix("0x1234\n"), "\(String(decoding: inGuest.stdout, as: UTF8.self))")
            #expect(try HandlesFile.read(from: vm.handlesPath).pciDevices == ["edu-0"])

            // `pci-testdev` with no driver to bind: the guest sees it, no driver comes, and it is
            // AssignedInvalid; its removal still unplugs it.
            let bare = try await vpci.reserve(.init(identity: "testdev-0", driver: "pci-testdev"))
            await #expect(throws: VMControllerError.self) { _ = try await vpci.addToVM(bare) }
            #expect(await vpci.assignments.first { $0.id == bare }?.state == .assignedInvalid)
            try await vpci.removeFromVM(bare)

            try await vpci.removeFromVM(id)
            let gone = try await vm.execIntoHost(["sh", "-c", "test -e /sys/bus/pci/devices/\(seen.address) && echo present || echo gone; grep -l 0x11e8 /sys/bus/pci/devices/*/device || true"])
            #expect(String(decoding: gone.stdout, as: UTF8.self) == "gone\n", "the guest let both go: \(String(decoding: gone.stdout, as: UTF8.self))")
            #expect(await vpci.assignments.isEmpty)
            #expect(try HandlesFile.read(from: vm.handlesPath).pciDevices == [])
        }
    }

    /// As a container under runc drives a VFIO device: the guest binds the device to vfio-pci
    /// behind the VM's emulated IOMMU, the agent names the group's node, and a container
    /// (crun in the guest as the agent runs it, with the group node and a device rule for it in its spec, as the
    /// shim writes them) opens the group, which works only for a viable group.
    @Test func aDeviceBoundToVFIOInTheGuestIsAGroupAContainerOpens() async throws {
        try await withBootedVM("vpcivfio") { vm, vpci in
            let id = try await vpci.reserve(.init(identity: "edu-vfio", driver: "edu", guestDriver: "vfio-pci"))
            let seen = try await vpci.addToVM(id)
            let group = try #require(seen.vfioGroup, "\(seen)")
            #expect(seen.driver == "vfio-pci")
            let node = try await vm.execIntoHost(["sh", "-c", "stat -c '%t:%T' /dev/vfio/\(group.group); test -d /sys/module/vfio_iommu_type1 && echo type1"])
            #expect(String(decoding: node.stdout, as: UTF8.self) == "\(String(group.major, radix: 16)):\(String(group.minor, radix: 16))\ntype1\n",
                    "the node the agent named, and vfio's soft dependency loaded: \(node)")

            let config = """
            {"ociVersion": "1.0.2", "root": {"path": "rootfs"},
             "process": {"args": ["/bin/sh", "-c", "exec 3<>/dev/vfio/\(group.group) && echo opened"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
             "mounts": [{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]}],
             "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}],
                       "devices": [{"path": "/dev/vfio/\(group.group)", "type": "c", "major": \(group.major), "minor": \(group.minor), "fileMode": 438}],
                       "resources": {"devices": [{"allow": false, "access": "rwm"},
                                                 {"allow": true, "type": "c", "major": \(group.major), "minor": \(group.minor), "access": "rw"}]}}}
            """
            let run = try await vm.execIntoHost(["sh", "-c", """
                mkdir -p /tmp/vfioc && mount -t tmpfs tmpfs /tmp/vfioc && mkdir -p /tmp/vfioc/rootfs/bin && cp /bin/busybox /tmp/vfioc/rootfs/bin/ && ln -sf busybox /tmp/vfioc/rootfs/bin/sh && \
                cat > /tmp/vfioc/config.json && crun run --no-pivot --bundle /tmp/vfioc vfioc; umount /tmp/vfioc
                """], stdin: Array(config.utf8))
            #expect(String(decoding: run.stdout, as: UTF8.self) == "opened\n", "\(String(decoding: run.stderr, as: UTF8.self))")

            try await vpci.removeFromVM(id)
            let gone = try await vm.execIntoHost(["sh", "-c", "test -e /dev/vfio/\(group.group) && echo present || echo gone"])
            #expect(String(decoding: gone.stdout, as: UTF8.self) == "gone\n", "vfio-pci let the device go with its group")
        }
    }

    @Test func aDeviceBeyondTheFreeRootPortsIsAClearError() async throws {
        try await withBootedVM("vpcifull", rootPorts: 1) { _, vpci in
            let first = try await vpci.reserve(.init(identity: "edu-a", driver: "edu", guestDriver: "pci-stub"))
            _ = try await vpci.addToVM(first)
            let second = try await vpci.reserve(.init(identity: "edu-b", driver: "edu", guestDriver: "pci-stub"))
            do {
                _ = try await vpci.addToVM(second)
                Issue.record("a second device found a root port in a VM with one")
            } catch {
                #expect("\(error)".contains("hot-plug slots are taken"), "\(error)")
            }
            #expect(await vpci.assignments.first { $0.id == second }?.state == .removed)
            try await vpci.removeFromVM(second)
            try await vpci.removeFromVM(first)
        }
    }

    /// Boots a VM (TCG, `rootPorts` hot-plug ports), runs `body` with it and its vPCI
    /// controller, and ends the VM whether `body` passed or threw.
    private func withBootedVM(_ id: String, rootPorts: Int = VMOptions().pciRootPorts,
                              _ body: (VMController, VPCIController) async throws -> Void) async throws {
        let state = "/tmp/skiff-vpci-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: state) }
        let vm = VMController(id: "\(id)-\(getpid())", stateDirectory: state)
        var options = VMOptions()
        options.accelerator = .tcg
        options.pciRootPorts = rootPorts
        try await vm.createVM(options: options)
        do {
            try await vm.startVM(bootTimeout: .seconds(90))
            try await body(vm, try #require(await vm.vpci))
        } catch {
            try? await vm.terminateVM()
            throw error
        }
        try await vm.terminateVM()
    }
}
