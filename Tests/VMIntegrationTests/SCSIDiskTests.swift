import Foundation
import Glibc
import Testing
import VMController
import VMManager

/// The SCSI sub-controller against a booted VM: an ext4 image is hot-added, mounted, written,
/// unmounted, ejected and detached, and the host finds the write in the image.
@Suite(.serialized, .timeLimit(.minutes(3))) struct SCSIDiskTests {
    @Test func aDiskIsMountedWrittenAndLetGoAndTheImageKeepsTheWrite() async throws {
        let state = "/tmp/skiff-scsi-\(UUID().uuidString.prefix(8))"
        let image = state + "-disk.ext4"
        defer {
            try? FileManager.default.removeItem(atPath: state)
            unlink(image)
            unlink(image + ".out")
        }
        #expect(system("truncate -s 32M \(image) && mkfs.ext4 -q -F \(image)") == 0)
        let vm = VMController(id: "scsi-\(getpid())", stateDirectory: state)
        var options = VMOptions()
        options.accelerator = .tcg
        try await vm.createVM(options: options)
        do {
            try await vm.startVM(bootTimeout: .seconds(90))
            let scsi = try #require(await vm.scsi)
            let id = try await scsi.reserve(hostPath: image, readOnly: false, mount: .init(fstype: "ext4"))
            let path = try await scsi.mapToGuest(id)
            let wrote = try await vm.execIntoHost(["sh", "-c", "echo written in the VM > \(path)/f && grep \(path) /proc/mounts"])
            #expect(wrote.exitStatus == 0, "\(String(decoding: wrote.stderr, as: UTF8.self))")
            #expect(String(decoding: wrote.stdout, as: UTF8.self).contains("ext4 rw"), "mounted read-write")
            try await scsi.unmapFromGuest(id)
            let left = try await vm.execIntoHost(["sh", "-c", "ls /sys/bus/scsi/devices/ | grep -c ':0:0:0' || true; grep -c /run/skiff/disks /proc/mounts || true"])
            #expect(String(decoding: left.stdout, as: UTF8.self) == "0\n0\n", "the guest let the disk go")
            #expect(await scsi.count == 0)
            #expect(try HandlesFile.read(from: vm.handlesPath).disks == [])
        } catch {
            try? await vm.terminateVM()
            throw error
        }
        try await vm.terminateVM()
        let readBack = try String(contentsOfFile: try debugfsCat(image, "/f"), encoding: .utf8)
        #expect(readBack == "written in the VM\n")
    }

    /// Copies file `path` out of the ext4 image with debugfs; the copy's path.
    private func debugfsCat(_ image: String, _ path: String) throws -> String {
        let out = image + ".out"
        #expect(system("debugfs -R 'dump \(path) \(out)' \(image) >/dev/null 2>&1") == 0)
        return out
    }
}
