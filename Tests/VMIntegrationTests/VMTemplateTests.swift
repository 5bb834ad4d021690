import Foundation
import Glibc
import Testing
import VMController
import VMManager

/// VM templates against real QEMU and the real guest: the first VM of a shape makes the
/// template, the next starts as a copy of it, and each copy runs with the host's clock and a
/// random state of its own; a template a copy cannot start from is removed and the VM boots.
@Suite(.serialized, .timeLimit(.minutes(4))) struct VMTemplateTests {
    /// A VM created over a fresh state directory under `root`, with templates in `templates`.
    private func makeVM(root: String, templates: String) async throws -> (VMController, String) {
        let image = try GuestImage.locate()
        let id = "tpl-\(UUID().uuidString.prefix(8).lowercased())"
        let state = root + "/" + id
        let document = try VMBuilder(id: id, stateDirectory: state, image: image)
            .share(hostPath: state + "/share", tag: "skiffshare")
            .templates(directory: templates)
            .build()
        let controller = VMController(id: id, stateDirectory: state)
        try await controller.createVM(document)
        return (controller, state)
    }

    /// The guest's wall clock (seconds) and 32 bytes of its /dev/urandom.
    private func clockAndRandom(_ vm: VMController) async throws -> (Int, [UInt8]) {
        let date = try await vm.execIntoHost(["date", "+%s"])
        let seconds = try #require(Int(String(decoding: date.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)))
        let random = try await vm.execIntoHost(["head", "-c", "32", "/dev/urandom"])
        #expect(random.stdout.count == 32)
        return (seconds, random.stdout)
    }

    @Test func theFirstVMMakesTheTemplateTheNextIsACopyWithItsOwnClockAndRandomState() async throws {
        let root = "/tmp/skiff-tpl-\(UUID().uuidString.prefix(8))"
        let templates = root + "/templates"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        var started: [(VMController, String)] = []
        do {
            let (first, firstState) = try await makeVM(root: root, templates: templates)
            started.append((first, firstState))
            try await first.startVM(bootTimeout: .seconds(120))
            guard case let .madeTemplate(template) = await first.startPath else {
                Issue.record("the first VM of a shape makes the template: \(String(describing: await first.startPath))")
                return
            }
            // The template's guest clock falls behind while it waits: a copy must not keep it.
            try await Task.sleep(for: .seconds(8))
            let (second, secondState) = try await makeVM(root: root, templates: templates)
            started.append((second, secondState))
            try await second.startVM(bootTimeout: .seconds(120))
            #expect(await second.startPath == .copied(template: template))

            let (firstClock, firstRandom) = try await clockAndRandom(first)
            let (secondClock, secondRandom) = try await clockAndRandom(second)
            let now = Int(Date().timeIntervalSince1970)
            #expect(abs(firstClock - now) <= 5 && abs(secondClock - now) <= 5, "guest clocks \(firstClock), \(secondClock); host \(now)")
            #expect(firstRandom != secondRandom, "two copies of one template hand out the same random bytes")

            // The copy's RAM is the template's memory file, mapped private.
            let pid = try #require(await second.processID())
            let maps = try String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8)
            let ram = maps.split(separator: "\n").first { $0.hasSuffix(template + "/memory") }
            #expect(ram.map { $0.split(separator: " ")[1] } == "rw-p", "the template's memory in the copy's maps: \(String(describing: ram))")
            await #expect(throws: VMControllerError.self, "a balloon discard would punch holes in the template") {
                try await second.update(memoryBytes: 200 << 20)
            }

            // Both commands ran in the copies; the template is whole and nothing was left being built.
            for (vm, state) in started {
                try await vm.terminateVM()
                #expect(!FileManager.default.fileExists(atPath: state), "the state directory is left")
            }
            started.removeAll()
            let names = try FileManager.default.contentsOfDirectory(atPath: templates)
            #expect(!names.contains { $0.hasPrefix("build-") }, "a build directory is left: \(names)")

            // A template a copy cannot start from (its state cut short) is removed, and the VM boots.
            let state = template + "/state"
            #expect(truncate(state, 100) == 0)
            let (third, thirdState) = try await makeVM(root: root, templates: templates)
            started.append((third, thirdState))
            try await third.startVM(bootTimeout: .seconds(120))
            guard case .bootedAfterTemplateFailure = await third.startPath else {
                Issue.record("a broken template is not used: \(String(describing: await third.startPath))")
                return
            }
            #expect(!FileManager.default.fileExists(atPath: template), "the broken template is removed")
            #expect(try await third.execIntoHost(["true"]).exitStatus == 0)
            try await third.terminateVM()
            #expect(!FileManager.default.fileExists(atPath: thirdState))
            #expect(qemuProcesses(named: "skiff-\(third.id)").isEmpty)
            started.removeAll()
        } catch {
            for (vm, _) in started { try? await vm.terminateVM() }
            throw error
        }
    }

    @Test func aCleanupFromTheHandlesFileWhileATemplateIsMadeLeavesNothing() async throws {
        let root = "/tmp/skiff-tpl-\(UUID().uuidString.prefix(8))"
        let templates = root + "/templates"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (vm, state) = try await makeVM(root: root, templates: templates)
        let starting = Task { try await vm.startVM(bootTimeout: .seconds(120)) }
        // The template's guest is booting once its memory file exists and the pid file names QEMU.
        let build = VMTemplateStore(directory: templates).buildDirectory(forVM: vm.id)
        let pidFile = state + "/qemu.pid"
        var pid: Int32?
        for _ in 0..<3000 where pid == nil {
            if access(build + "/memory", F_OK) == 0, let text = try? String(contentsOfFile: pidFile, encoding: .utf8) {
                pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
            }
            if pid == nil { try await Task.sleep(for: .milliseconds(10)) }
        }
        let templateQEMU = try #require(pid, "the template's QEMU never started")
        // What `shim delete` runs after the shim was killed: the handles file alone.
        let failures = await VMController.cleanUp(stateDirectory: state)
        // The controller in this process carries on (a killed shim would not): once its
        // template's QEMU is gone it boots the VM, making files in the state directory again,
        // which its own terminate removes below.
        #expect(failures.allSatisfy { $0 == "remove \(state): Directory not empty" }, "\(failures)")
        let cmdline = (try? String(contentsOfFile: "/proc/\(templateQEMU)/cmdline", encoding: .utf8)) ?? ""
        #expect(!cmdline.contains("skiff-\(vm.id)"), "the template's QEMU outlived the cleanup")
        #expect(!FileManager.default.fileExists(atPath: build), "the half-made template is left")
        _ = try? await starting.value
        try? await vm.terminateVM()
        #expect(qemuProcesses(named: "skiff-\(vm.id)").isEmpty)
        #expect(!FileManager.default.fileExists(atPath: state))
        let names = (try? FileManager.default.contentsOfDirectory(atPath: templates)) ?? []
        #expect(!names.contains { $0.hasPrefix("build-") }, "\(names)")
    }
}
