import Foundation
import Glibc
import Testing
import VMController
import VMManager

/// What confines QEMU, against real QEMU and the real guest: QEMU's own seccomp sandbox (a
/// QEMU asked to spawn a process cannot), a mount namespace that holds only its own files (no
/// shell, no other pod's files, the image read-only), five file capabilities and no others,
/// and the VM's state directory and sockets open to their owner only.
@Suite(.serialized, .timeLimit(.minutes(3))) struct QEMUConfinementTests {
    /// Runs `body` with a booted VM, its document and the scratch root its state directory
    /// (`root + "/vm"`) is in; terminates it and checks nothing is left.
    private func withRunningVM(_ body: (VMController, VMDocument, String) async throws -> Void) async throws {
        let image = try GuestImage.locate()
        let root = "/tmp/skiff-conf-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let state = root + "/vm"
        let id = "conf-\(UUID().uuidString.prefix(8).lowercased())"
        let document = try VMBuilder(id: id, stateDirectory: state, image: image)
            .share(hostPath: state + "/share", tag: "skiffshare")
            .build()
        let vm = VMController(id: id, stateDirectory: state)
        try await vm.createVM(document)
        do {
            try await vm.startVM(bootTimeout: .seconds(90))
            try await body(vm, document, root)
        } catch {
            try? await vm.terminateVM()
            throw error
        }
        try? await vm.terminateVM()
        #expect(qemuProcesses(named: "skiff-\(id)").isEmpty)
        #expect(!FileManager.default.fileExists(atPath: state))
    }

    /// Mode bits (the low 12) of `path`, without following a final symlink.
    private func mode(_ path: String) -> mode_t? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return info.st_mode & 0o7777
    }

    @Test func qemuRunsUnderItsSeccompSandboxAndCannotStartAProcess() async throws {
        try await withRunningVM { vm, document, root in
            let pid = try #require(await vm.processID())
            let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
            #expect(status.contains("Seccomp:\t2"), "QEMU runs without a seccomp filter")
            // Two filters: the shim's allow-list (QEMUSyscalls), installed before exec, and QEMU's own sandbox.
            #expect(status.contains("Seccomp_filters:\t2"), "\(status.split(separator: "\n").filter { $0.hasPrefix("Seccomp") })")

            // QEMU's `exec:` migration forks a shell: under the sandbox it cannot.
            let marker = root + "/spawned"
            let fdSocket = try #require(document.qmpFDSocket)
            let qmp = try await QMPClient.connect(unixSocket: fdSocket)
            _ = try? await qmp.execute("migrate", ["uri": .string("exec:touch \(marker)")])
            try await Task.sleep(for: .seconds(2))
            await qmp.close()
            #expect(!FileManager.default.fileExists(atPath: marker), "QEMU started a process")
        }
    }

    @Test func theVMsStateDirectoryIsTheOwnersAndItsSocketsAndLogsAre0600() async throws {
        try await withRunningVM { vm, document, root in
            #expect(mode(root + "/vm") == 0o700)
            var paths = [document.qmpSocket, document.consoleLog, document.qemuLog, document.pidFile]
            paths += document.qmpFDSocket.map { [$0] } ?? []
            if case let .virtioSerial(control, stdio) = document.agentChannel { paths += [control.socketPath, stdio.socketPath] }
            for path in paths {
                #expect(mode(path) == 0o600, "\(path) has mode \(String(mode(path) ?? 0, radix: 8))")
            }
            // Still usable by the shim: the agent answers through them.
            let answer = try await vm.execIntoHost(["true"])
            #expect(answer.exitStatus == 0)
        }
    }

    @Test func qemuSeesOnlyItsOwnFilesInAMountNamespaceOfItsOwn() async throws {
        try await withRunningVM { vm, document, root in
            // Another pod's state beside this one's, and the test's own files.
            try FileManager.default.createDirectory(atPath: root + "/other-pod", withIntermediateDirectories: true)
            try "secret".write(toFile: root + "/other-pod/secret", atomically: false, encoding: .utf8)
            let pid = try #require(await vm.processID())
            let ours = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/mnt")
            #expect(try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/mnt") != ours, "QEMU shares our mount namespace")
            let view = "/proc/\(pid)/root"
            for hidden in ["/bin/sh", "/usr/bin/sh", "/usr/bin/busybox", root + "/other-pod", "/var/lib/containerd", "/etc/shadow", "/dev/sda", "/root"] {
                #expect(!FileManager.default.fileExists(atPath: view + hidden), "QEMU sees \(hidden)")
            }
            #expect(FileManager.default.fileExists(atPath: view + document.qmpSocket), "QEMU's own state directory")
            #expect(FileManager.default.fileExists(atPath: view + document.kernel), "the guest's kernel")
            // The guest image is read-only to QEMU, its state directory writable.
            let mounts = try String(contentsOfFile: "/proc/\(pid)/mountinfo", encoding: .utf8).split(separator: "\n")
            func options(at path: String) -> [Substring]? {
                mounts.last { $0.split(separator: " ")[4] == path }.map { $0.split(separator: " ")[5].split(separator: ",") }
            }
            let imageDirectory = String(document.kernel[..<(document.kernel.lastIndex(of: "/") ?? document.kernel.endIndex)])
            #expect(options(at: imageDirectory)?.contains("ro") == true, "the image: \(options(at: imageDirectory) ?? [])")
            #expect(options(at: root + "/vm")?.contains("rw") == true, "the state directory: \(options(at: root + "/vm") ?? [])")
            #expect(options(at: "/")?.contains("ro") == true, "QEMU's root: \(options(at: "/") ?? [])")
            // The guest still answers: nothing QEMU needs is missing.
            #expect(try await vm.execIntoHost(["true"]).exitStatus == 0)
        }
    }

    @Test func qemuHoldsOnlyTheFileCapabilitiesItsShareServerNeeds() async throws {
        try await withRunningVM { vm, _, _ in
            let pid = try #require(await vm.processID())
            let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8).split(separator: "\n")
            func set(_ name: String) -> UInt64? {
                status.first { $0.hasPrefix(name + ":") }.flatMap { UInt64($0.split(separator: "\t").last ?? "", radix: 16) }
            }
            // CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID: bits 0-4.
            for name in ["CapInh", "CapPrm", "CapEff", "CapBnd"] {
                #expect(set(name) == 0x1f, "\(name) is \(String(set(name) ?? 0, radix: 16))")
            }
            #expect(set("CapAmb") == 0)
        }
    }
}
