import ContainerdAPI
import Foundation
@testable import PodController
import SkiffSupport
import Testing

/// Delete of the pod's last container, once it has stopped, ends the VM before it releases
/// anything: what the container held in the guest goes with the VM (no round trip each), and
/// what it held on the host is still released. A container with a volume of the user's is
/// released in the guest first (its writes are flushed), and one that is not the last leaves
/// the VM alone.
@Suite(.timeLimit(.minutes(1))) struct DeleteOrderTests {
    private func runAndStop(_ rig: PodRig, _ id: String, sandbox: String = "pod1", amend: ((String) throws -> Void)? = nil) async throws {
        let request = try rig.bundle(id, binds: 1, sandbox: sandbox)
        try amend?(request.bundle + "/config.json")
        _ = try await rig.pod.create(request)
        _ = try await rig.pod.start(id: id, execID: "")
        rig.vm?.guestAgent.exit(id, status: 3)
        _ = try await rig.pod.wait(id: id, execID: "")
    }

    /// Index of the first guest call named `name`.
    private func firstCall(_ vm: FakeVM, _ name: String) -> Int? {
        vm.guestAgent.calls.firstIndex { $0 == name || $0.hasPrefix(name + " ") }
    }

    @Test func theLastStoppedContainerEndsTheVMBeforeItsGuestStateIsReleased() async throws {
        let rig = PodRig()
        defer { rig.cleanUp() }
        try await runAndStop(rig, "a")
        let vm = try #require(rig.vm)
        let exit = try await rig.pod.delete(id: "a", execID: "")
        #expect(exit.status == 3)
        let end = try #require(vm.state.withLock { $0.guestCallsAtEnd })
        #expect((firstCall(vm, "deleteContainer") ?? end) >= end, "crun delete was not waited for: the VM had ended")
        #expect(vm.state.withLock { $0.terminated } == 1)
        #expect(vm.fakeShares.held == 0 && rig.rootfs.count == 0, "what it held on the host is released")
        #expect(await rig.pod.isEmpty)
    }

    @Test func aContainerWithAVolumeIsReleasedInTheGuestBeforeTheVMEnds() async throws {
        let rig = PodRig()
        defer { rig.cleanUp() }
        let image = rig.root + "/volume.ext4"
        FileManager.default.createFile(atPath: image, contents: Data(count: 4096))
        try await runAndStop(rig, "a") { path in
            var spec = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
            spec["mounts"] = [["destination": "/data", "type": "ext4", "source": image]]
            try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: path))
        }
        let vm = try #require(rig.vm)
        _ = try await rig.pod.delete(id: "a", execID: "")
        let end = try #require(vm.state.withLock { $0.guestCallsAtEnd })
        let deleted = try #require(firstCall(vm, "deleteContainer"))
        #expect(deleted < end, "crun delete ran while the VM lived")
        #expect(vm.fakeDisks.held.isEmpty)
    }

    @Test func aStoppedContainerThatIsNotTheLastLeavesTheVMRunning() async throws {
        let rig = PodRig()
        defer { rig.cleanUp() }
        _ = try await rig.pod.create(try rig.bundle("other", sandbox: "pod1"))
        try await runAndStop(rig, "a")
        let vm = try #require(rig.vm)
        _ = try await rig.pod.delete(id: "a", execID: "")
        #expect(vm.state.withLock { $0.terminated } == 0)
        #expect(firstCall(vm, "deleteContainer") != nil && vm.guestAgent.containers["other"] != nil)
    }
}
