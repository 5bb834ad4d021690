import CSkiffSys
import Foundation
import Glibc
import GuestManager
import Testing
import VMManager

/// The VM manager's hot-plug primitives against a booted guest: the guest sees what QEMU adds
/// and lets go of what QEMU removes.
@Suite(.serialized, .timeLimit(.minutes(3))) struct HotPlugTests {
    /// Boots a VM with the agent, gives `body` the VM and a shell in the guest, and ends the VM
    /// however `body` ends.
    private func withGuest(_ body: (QEMUVirtualMachine, String, (String) async throws -> String) async throws -> Void) async throws {
        let image = try GuestImage.locate()
        let state = "/tmp/skiff-hp-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: state) }
        let document = try VMBuilder(id: "hotplug", stateDirectory: state, image: image).build()
        let vm = QEMUVirtualMachine(document: document)
        try await vm.start()
        do {
            guard case let .virtioSerial(control, stdio) = document.agentChannel else { throw VMManagerError.invalidConfiguration("serial") }
            let guest = try await GuestConnection.connect(
                controlSocket: control.socketPath, stdioSocket: stdio.socketPath, timeout: .seconds(90),
                watch: .init(consoleTail: { logTail(document.consoleLog) }, vmExit: { await vm.exitStatus.map { "\($0)" } }))
            defer { Task { await guest.close() } }
            try await body(vm, state) { script in
                let result = try await guest.run(["sh", "-c", script], id: "sh-\(UInt32.random(in: 0...UInt32.max))")
                return String(decoding: result.stdout + result.stderr, as: UTF8.self)
            }
        } catch {
            _ = try? await vm.terminate()
            await vm.close()
            throw error
        }
        #expect(try await vm.terminate(grace: .seconds(3)) == .exited(0))
        await vm.close()
    }

    @Test func scsiDiskPCIDeviceAndBalloonReachTheGuestAndComeBack() async throws {
        try await withGuest { vm, state, sh in
        // A SCSI disk: a 4 MiB file appears as a block device at 0:0:1:2, once the SCSI
        // driver is in (the agent loads it at the first disk mount; here, as it would).
        #expect(try await sh("modprobe -a virtio_scsi sd_mod && echo ok") == "ok\n")
        let disk = state + "/disk.img"
        #expect(FileManager.default.createFile(atPath: disk, contents: Data(count: 4 << 20)))
        try await vm.addBlockNode(name: "disk1", path: disk, readOnly: false)
        try await vm.addSCSIDisk(id: "scsi-disk1", node: "disk1", controller: 0, target: 1, lun: 2)
        var seen = ""
        for _ in 0..<100 where !seen.contains("block") {
            seen = try await sh("ls /sys/bus/scsi/devices/0:0:1:2/ 2>/dev/null")
            if !seen.contains("block") { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(seen.contains("block"), "the guest never saw the disk")
        try await vm.removeDevice(id: "scsi-disk1")
        try await vm.removeBlockNode(name: "disk1")
        #expect(try await sh("ls /sys/bus/scsi/devices/ | grep -c 0:0:1:2 || true").trimmingCharacters(in: .whitespacesAndNewlines) == "0")

        // A PCI device: QEMU's edu test device stands in for an assigned one.
        let before = try await sh("ls /sys/bus/pci/devices | wc -l")
        try await vm.addPCIDevice(id: "edu1", driver: "edu")
        var after = before
        for _ in 0..<100 where after == before {
            after = try await sh("ls /sys/bus/pci/devices | wc -l")
            if after == before { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(Int(after.trimmingCharacters(in: .whitespaces.union(.newlines))) == (Int(before.trimmingCharacters(in: .whitespaces.union(.newlines))) ?? 0) + 1)
        try await vm.removeDevice(id: "edu1")

        // Refused requests carry QEMU's reason.
        await #expect(throws: VMManagerError.self) { try await vm.addPCIDevice(id: "edu1", driver: "no-such-device") }
        await #expect(throws: VMManagerError.self) { try await vm.setMemoryTarget(bytes: 1 << 40) }

        // The balloon gives memory back.
        try await vm.setMemoryTarget(bytes: 160 << 20)
        var actual = try await vm.memoryActual()
        for _ in 0..<100 where actual > 160 << 20 {
            try await Task.sleep(for: .milliseconds(50))
            actual = try await vm.memoryActual()
        }
        #expect(actual == 160 << 20)
        let stats = try await vm.hostStats()
        #expect(stats.cpuTime > .zero)
        }
    }

    /// A NIC on a tap device: the tap is bridged to a veth pair whose other end lives in a
    /// network namespace of the test's own, and the guest reaches the address there.
    @Test func aHotPluggedNICReachesAnAddressInsideItsOwnNetworkNamespace() async throws {
        let tag = String(UUID().uuidString.prefix(6)).lowercased()
        let netns = "skiff-t\(tag)", tap = "sktap\(tag)", bridge = "skbr\(tag)", veth = "skve\(tag)", peer = "skvp\(tag)"
        defer {
            _ = try? host("ip link del \(bridge); ip link del \(veth); ip link del \(tap); ip netns del \(netns); true")
        }
        _ = try host("""
            ip netns add \(netns)
            ip tuntap add dev \(tap) mode tap
            ip link add \(bridge) type bridge
            ip link add \(veth) type veth peer name \(peer)
            ip link set \(peer) netns \(netns)
            ip link set \(tap) master \(bridge)
            ip link set \(veth) master \(bridge)
            ip link set \(tap) up; ip link set \(veth) up; ip link set \(bridge) up
            ip -n \(netns) addr add 10.231.7.1/24 dev \(peer)
            ip -n \(netns) link set \(peer) up
            ip -n \(netns) link set lo up
            """)
        try await withGuest { vm, _, sh in
            // The NIC's driver, which the agent loads with the first interface it configures.
            #expect(try await sh("modprobe virtio_net && echo ok") == "ok\n")
            // QEMU opens no tap itself (no CAP_NET_ADMIN, no /dev/net/tun): it gets the descriptor.
            let tapFD = skiff_open_tap_in_netns("/proc/self/ns/net", tap)
            try #require(tapFD >= 0, "open \(tap): \(String(cString: strerror(-tapFD)))")
            defer { close(tapFD) }
            try await vm.addNetworkInterface(id: "nic1", tapFD: tapFD, mac: "52:54:00:12:34:56")
            var link = ""
            for _ in 0..<100 where !link.contains("52:54:00:12:34:56") {
                link = try await sh("cat /sys/class/net/*/address 2>/dev/null")
                if !link.contains("52:54:00:12:34:56") { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(link.contains("52:54:00:12:34:56"), "the guest never saw the NIC")
            let ping = try await sh("""
                dev=$(grep -l 52:54:00:12:34:56 /sys/class/net/*/address | cut -d/ -f5)
                ip addr add 10.231.7.2/24 dev $dev && ip link set $dev up && ping -c 2 -W 5 10.231.7.1
                """)
            #expect(ping.contains("2 packets received"), "ping from the guest: \(ping)")
            try await vm.removeNetworkInterface(id: "nic1")
            #expect(try await sh("grep -l 52:54:00:12:34:56 /sys/class/net/*/address 2>/dev/null | wc -l").trimmingCharacters(in: .whitespacesAndNewlines) == "0")
        }
    }

    /// Runs a host shell script (as root), failing with its output.
    private func host(_ script: String) throws -> String {
        let log = "/tmp/skiff-hp-sh-\(UUID().uuidString.prefix(8))"
        defer { unlink(log) }
        let status = system("(set -e\n\(script)\n) >\(log) 2>&1")
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        guard status == 0 else { throw VMManagerError.invalidConfiguration("host script failed: \(output)") }
        return output
    }
}
