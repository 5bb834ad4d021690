import ContainerdAPI
import Foundation
import Glibc
@testable import PodController
import SkiffSupport
import Testing
import VMController

/// A root on block devices (`io.skiff.rootfs=block`) built from containerd's overlay snapshot
/// with the real tools (mkfs.erofs, mkfs.ext4) over a fake VM: what it attaches, what Delete
/// leaves (the cache only), and the failure edges: a full disk under the layer cache or the
/// bundle, a layer that is not there. Each gives a clear error and leaves no file or disk.
@Suite(.serialized, .timeLimit(.minutes(2))) struct BlockRootfsTests {
    /// A request whose rootfs is an overlay of `lowers` (made, each with `files` of `size`
    /// bytes) and an upper directory holding one file, with the block-root annotation.
    private func request(_ rig: PodRig, _ id: String, lowers: Int = 2, size: Int = 16, bundleOn disk: String? = nil) throws -> Containerd_Task_V2_CreateTaskRequest {
        var request = try rig.bundle(id)
        if let disk {
            // The bundle moved onto `disk` (a small filesystem), its spec with it.
            let moved = "\(disk)/\(id)"
            try FileManager.default.createDirectory(atPath: moved + "/rootfs", withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: request.bundle + "/config.json", toPath: moved + "/config.json")
            request.bundle = moved
        }
        let path = request.bundle + "/config.json"
        var spec = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        spec["annotations"] = ["io.skiff.rootfs": "block", "io.skiff.scratch-mib": "64"]
        try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: path))
        var dirs: [String] = []
        for n in 0..<lowers {
            let dir = "\(rig.root)/snapshots/\(id)-\(n)"
            try FileManager.default.createDirectory(atPath: dir + "/bin", withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: "\(dir)/bin/file\(n)", contents: Data(repeating: UInt8(n), count: size))
            dirs.append(dir)
        }
        let upper = "\(rig.root)/snapshots/\(id)-upper"
        try FileManager.default.createDirectory(atPath: upper, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: upper + "/etc-hostname", contents: Data("pod\n".utf8))
        request.rootfs = [.with {
            $0.type = "overlay"
            $0.source = "overlay"
            $0.options = ["index=off", "workdir=\(rig.root)/snapshots/\(id)-work", "upperdir=\(upper)", "lowerdir=\(dirs.joined(separator: ":"))"]
        }]
        return request
    }

    /// A tmpfs of `kib` KiB at a new directory, filled to the last block; unmounted by `release`.
    private func fullDisk(_ rig: PodRig, _ name: String, kib: Int = 256) throws -> String {
        let dir = "\(rig.root)/\(name)"
        _ = try PrivateShell.run("mkdir -p \(dir) && mount -t tmpfs -o size=\(kib)k tmpfs \(dir) && (dd if=/dev/zero of=\(dir)/filler bs=4k 2>/dev/null || true)")
        return dir
    }

    private func createError(_ pod: PodController, _ request: Containerd_Task_V2_CreateTaskRequest) async -> SkiffError? {
        do { _ = try await pod.create(request) } catch { return error as? SkiffError }
        return nil
    }

    private func files(_ dir: String) -> Set<String> { Set((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []) }

    @Test func theRootIsTheUpperLayersAndAScratchDiskAndDeleteLeavesOnlyTheCache() async throws {
        let rig = PodRig()
        defer { rig.cleanUp() }
        let request = try request(rig, "a")
        _ = try await rig.pod.create(request)
        let held = try #require(rig.vm?.fakeDisks.held)
        #expect(held.map(\.mount.fstype) == ["erofs", "erofs", "erofs", "ext4"], "the upper's image, two layers, the scratch disk")
        #expect(held.map(\.readOnly) == [true, true, true, false])
        #expect(held[0].path == request.bundle + "/skiff-upper.erofs" && held[3].path == request.bundle + "/skiff-scratch.ext4")
        #expect(held[1].path.hasPrefix(rig.root + "/layers/") && held[2].path.hasPrefix(rig.root + "/layers/"))
        #expect(rig.vm?.guestAgent.calls.contains("mountOverlay") == true)
        let root = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: request.bundle + "/" + GuestSpec.fileName))) as? [String: Any])
        #expect((root["root"] as? [String: Any])?["path"] as? String == "/run/skiff/rootfs/a")
        try await rig.pod.delete(id: "a", execID: "")
        #expect(rig.vm?.fakeDisks.held.isEmpty == true)
        #expect(!files(request.bundle).contains("skiff-upper.erofs") && !files(request.bundle).contains("skiff-scratch.ext4"))
        #expect(files(rig.root + "/layers").filter { $0.hasSuffix(".erofs") }.count == 2, "the layer images stay cached")
    }

    @Test func aFullDiskUnderTheLayerCacheIsAClearErrorAndLeavesNoPartialImage() async throws {
        let rig = PodRig(layers: nil)
        defer { _ = try? PrivateShell.run("umount \(rig.root)/cache"); rig.cleanUp() }
        let cache = try fullDisk(rig, "cache")
        let pod = PodController(events: rig.events, logger: .init(label: "test"), stateRoot: rig.root + "/state", rootfs: rig.rootfs,
                                layers: LayerCache(directory: cache)) { _, state in FakeVM(stateDirectory: state) }
        let request = try request(rig, "a", size: 1 << 20)
        let error = try #require(await createError(pod, request), "a create with no room for its layer images fails")
        #expect(error.code == .resourceExhausted && error.message.contains("converting layer") && error.message.contains("No space left"), "\(error.message)")
        #expect(files(cache) == ["filler"], "no partial image left")
        #expect(!files(request.bundle).contains("skiff-upper.erofs") && !files(request.bundle).contains("skiff-scratch.ext4"))
        #expect(await pod.isEmpty)
    }

    @Test func aFullDiskUnderTheBundleFailsTheScratchDiskClearlyAndLeavesNothing() async throws {
        let rig = PodRig()
        defer { _ = try? PrivateShell.run("umount \(rig.root)/bundles"); rig.cleanUp() }
        let disk = try fullDisk(rig, "bundles", kib: 1024)
        _ = try PrivateShell.run("rm \(disk)/filler")
        let request = try request(rig, "a", bundleOn: disk)
        // Room for the small files before it (the VM's name, the upper's image), not for the scratch disk.
        _ = try PrivateShell.run("(dd if=/dev/zero of=\(disk)/filler bs=4k 2>/dev/null || true) && truncate -s -64K \(disk)/filler")
        let error = try #require(await createError(rig.pod, request), "a create with no room for its scratch disk fails")
        #expect(error.code == .resourceExhausted && error.message.contains("scratch disk") && error.message.contains("No space left"), "\(error.message)")
        #expect(files(request.bundle) == ["config.json", "rootfs"], "no upper image, scratch disk or spec left: \(files(request.bundle))")
        #expect(rig.vm?.fakeDisks.held.isEmpty == true, "every disk attached before is let go")
        #expect(rig.vm?.state.withLock { $0.terminated } == 1)
    }

    @Test func aLayerThatIsNotThereIsAnInvalidArgumentAndLeavesNothing() async throws {
        let rig = PodRig()
        defer { rig.cleanUp() }
        var request = try request(rig, "a")
        request.rootfs[0].options = request.rootfs[0].options.map { $0.hasPrefix("lowerdir=") ? $0 + ":\(rig.root)/snapshots/gone" : $0 }
        #expect(await errorCode { _ = try await rig.pod.create(request) } == .invalidArgument)
        #expect(rig.vm?.fakeDisks.held.isEmpty == true)
        #expect(!files(request.bundle).contains("skiff-upper.erofs") && !files(request.bundle).contains("skiff-scratch.ext4"))
    }
}

/// A shell line for the tests' own setup (tmpfs mounts need root, as the suite has).
enum PrivateShell {
    struct Failed: Error, CustomStringConvertible { var description: String }
    @discardableResult
    static func run(_ line: String) throws -> Int32 {
        let status = Glibc.system(line)
        guard status == 0 else { throw Failed(description: "\(line): status \(status)") }
        return status
    }
}
