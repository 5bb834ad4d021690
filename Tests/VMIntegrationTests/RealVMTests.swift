import Foundation
import Glibc
import Testing
import VMController
import VMManager

/// The whole VM stack against real QEMU, the real guest image and the real agent: boot, run
/// commands, stream, share directories, dump stacks, die in every way, and leave nothing.
/// Needs root and the image from `scripts/build-guest` (scripts/test builds both).
@Suite(.serialized, .timeLimit(.minutes(3))) struct RealVMTests {
    /// A VM controller over a fresh state directory, terminated and checked for leaks however
    /// the body ends.
    private func withVM(initrd: String? = nil, maxVCPUs: Int? = nil, _ body: (VMController, VMDocument, String) async throws -> Void) async throws {
        let image = try GuestImage.locate()
        let root = "/tmp/skiff-it-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let state = root + "/vm"
        let id = "it-\(UUID().uuidString.prefix(8).lowercased())"
        let document = try VMBuilder(id: id, stateDirectory: state, kernel: image.kernel, initrd: initrd ?? image.initrd)
            .guestRoot(image.root)
            .memory(mib: 256)
            .maxVCPUs(maxVCPUs)
            .share(hostPath: state + "/share", tag: "skiffshare")
            .build()
        let controller = VMController(id: id, stateDirectory: state)
        try await controller.createVM(document)
        do {
            try await body(controller, document, root)
        } catch {
            try? await controller.terminateVM()
            throw error
        }
        try await controller.terminateVM()
        #expect(await controller.state == .terminated)
        expectNothingLeft(id: id, state: state)
    }

    private func expectNothingLeft(id: String, state: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(qemuProcesses(named: "skiff-\(id)").isEmpty, "QEMU still running", sourceLocation: sourceLocation)
        let mounts = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
        #expect(!mounts.contains(state), "a bind mount is left", sourceLocation: sourceLocation)
        #expect(!FileManager.default.fileExists(atPath: state), "the state directory is left: \((try? FileManager.default.contentsOfDirectory(atPath: state)) ?? [])", sourceLocation: sourceLocation)
    }

    @Test func aVMBootsRunsCommandsStreamsSharesAndLeavesNothing() async throws {
        try await withVM { vm, document, root in
            try await vm.startVM(bootTimeout: .seconds(90))
            #expect(await vm.state == .running)

            let uname = try await vm.execIntoHost(["uname", "-r"])
            #expect(uname.exitStatus == 0)
            let release = String(decoding: uname.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(release.hasSuffix("-amd64"), "uname -r printed \(release)")

            let big = try await vm.execIntoHost(["head", "-c", "52428800", "/dev/zero"])
            #expect(big.exitStatus == 0)
            #expect(big.stdout.count == 52_428_800)

            // Plan9: one directory read-only, another read-write.
            let plan9 = try #require(await vm.plan9)
            let readOnly = root + "/ro", readWrite = root + "/rw"
            try FileManager.default.createDirectory(atPath: readOnly, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: readWrite, withIntermediateDirectories: true)
            try "from the host\n".write(toFile: readOnly + "/hello", atomically: true, encoding: .utf8)
            let roShare = try await plan9.reserve(hostPath: readOnly, readOnly: true)
            let rwShare = try await plan9.reserve(hostPath: readWrite, readOnly: false)
            let roPath = try await plan9.mapToGuest(roShare)
            let rwPath = try await plan9.mapToGuest(rwShare)
            let cat = try await vm.execIntoHost(["cat", roPath + "/hello"])
            #expect(String(decoding: cat.stdout, as: UTF8.self) == "from the host\n")
            let denied = try await vm.execIntoHost(["touch", roPath + "/nope"])
            #expect(denied.exitStatus != 0)
            #expect(String(decoding: denied.stderr, as: UTF8.self).contains("Read-only"))
            let wrote = try await vm.execIntoHost(["sh", "-c", "echo from the guest > \(rwPath)/note"])
            #expect(wrote.exitStatus == 0)
            #expect(try String(contentsOfFile: readWrite + "/note", encoding: .utf8) == "from the guest\n")
            try await plan9.unmapFromGuest(roShare)
            let gone = try await vm.execIntoHost(["ls", roPath + "/hello"])
            #expect(gone.exitStatus != 0)

            let stacks = try await vm.dumpStacks()
            #expect(stacks.contains("skiff-agent"))
            #expect(stacks.contains("thread "))

            let stats = try await vm.stats()
            #expect(stats.host.residentBytes > 32 << 20)
            #expect(stats.host.privateBytes > 16 << 20 && stats.host.privateBytes < stats.host.residentBytes)
            try await vm.update(memoryBytes: 200 << 20)
            await #expect(throws: VMControllerError.self) { try await vm.update(memoryBytes: 4 << 30) }
            _ = document
        }
    }

    @Test func crunInTheGuestIsASealedCopyThatNothingCanOverwrite() async throws {
        try await withVM { vm, _, _ in
            try await vm.startVM(bootTimeout: .seconds(90))
            // Sealed in the background after the hello, before the modules a share needs.
            var target = ""
            for _ in 0..<100 {
                let link = try await vm.execIntoHost(["readlink", "-f", "/usr/bin/crun"])
                target = String(decoding: link.stdout, as: UTF8.self)
                if target.hasPrefix("/memfd:") { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(target.hasPrefix("/memfd:skiff-sealed"), "\(target)")
            let version = try await vm.execIntoHost(["crun", "--version"])
            #expect(version.exitStatus == 0)
            #expect(String(decoding: version.stdout, as: UTF8.self).hasPrefix("crun version"))
            let overwrite = try await vm.execIntoHost(["sh", "-c", "echo x >> /usr/bin/crun"])
            #expect(overwrite.exitStatus != 0)
            #expect(String(decoding: overwrite.stderr, as: UTF8.self).contains("not permitted"), "\(overwrite)")
        }
    }

    @Test func hotAddedVCPUsComeOnlineInTheGuest() async throws {
        try await withVM(maxVCPUs: 3) { vm, _, _ in
            try await vm.startVM(bootTimeout: .seconds(90))
            func online() async throws -> String {
                let result = try await vm.execIntoHost(["cat", "/sys/devices/system/cpu/online"])
                return String(decoding: result.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }
            #expect(try await online() == "0")
            try await vm.update(vcpus: 3)
            #expect(try await online() == "0-2")
            let nproc = try await vm.execIntoHost(["nproc"])
            #expect(String(decoding: nproc.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) == "3")
            // vCPUs do not shrink, nor grow past the maximum; the VM stays up.
            await #expect(throws: VMControllerError.self) { try await vm.update(vcpus: 2) }
            await #expect(throws: VMControllerError.self) { try await vm.update(vcpus: 4) }
            #expect(await vm.state == .running)
        }
    }

    @Test func killingQEMUMovesTheControllerToTerminatedWithTheExitRecorded() async throws {
        try await withVM { vm, _, _ in
            try await vm.startVM(bootTimeout: .seconds(90))
            let pid = try #require(await vm.processID())
            kill(pid, SIGKILL)
            let status = await vm.wait()
            #expect(status == .signaled(SIGKILL))
            #expect(await vm.state == .terminated)
        }
    }

    @Test func aBrokenInitrdFailsWithTheConsoleNotAHang() async throws {
        let junk = "/tmp/skiff-broken-initrd-\(getpid())"
        #expect(FileManager.default.createFile(atPath: junk, contents: Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7919) })))
        defer { unlink(junk) }
        try await withVM(initrd: junk) { vm, _, _ in
            let started = ContinuousClock.now
            do {
                try await vm.startVM(bootTimeout: .seconds(90))
                Issue.record("a VM with a broken initrd started")
            } catch let VMControllerError.startFailed(message, state, _) {
                #expect(state == .invalid)
                #expect(message.contains("console log"))
                // The kernel said why, and the error carries it.
                #expect(message.contains("Kernel panic") || message.contains("VFS") || message.contains("initramfs"), "\(message)")
            }
            #expect(ContinuousClock.now - started < .seconds(80))
        }
    }
}

/// Pids of processes whose command line has `-name NAME`.
func qemuProcesses(named name: String) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap(Int32.init).filter { pid in
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        let args = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard let i = args.firstIndex(of: "-name"), i + 1 < args.count else { return false }
        return args[i + 1] == name
    }
}
