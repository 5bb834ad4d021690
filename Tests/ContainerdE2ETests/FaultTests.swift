import Foundation
import Glibc
import Synchronization
import Testing

extension ContainerdE2E {
    /// Faults as a user meets them through containerd, each ending with containerd's own
    /// cleanup and an empty census of what Skiff made (withContainerd): the shim killed while
    /// its VM boots and during an exec, QEMU killed while it boots and during an exec, the
    /// guest kernel panicking,
    /// the guest running out of memory, containerd restarted under live tasks, and no space
    /// where the shim keeps its pods' state or where scratch disks live.
    @Suite(.timeLimit(.minutes(6))) struct FaultTests {
        static let image = "docker.io/library/skiff-test:latest"
        static let runtime = "--runtime io.containerd.skiff.v2"

        /// Waits (30 s at most) until `condition` holds.
        private func waitFor(_ what: String, _ condition: () -> Bool) async throws {
            for _ in 0..<600 {
                if condition() { return }
                try await Task.sleep(for: .milliseconds(50))
            }
            Issue.record("never: \(what)")
        }

        /// A flag one task sets and another polls.
        final class StopFlag: Sendable {
            private let flag = Mutex(false)
            var isSet: Bool { flag.withLock { $0 } }
            func set() { flag.withLock { $0 = true } }
        }

        /// Mounts a tmpfs of `size` where `cd` makes its tasks' bundles (and Skiff its scratch
        /// disks); its path.
        private func mountSmallBundles(of cd: PrivateContainerd, size: String) throws -> String {
            let bundles = cd.dir + "/state/io.containerd.runtime.v2.task/default"
            try FileManager.default.createDirectory(atPath: bundles, withIntermediateDirectories: true)
            _ = try PrivateContainerd.shell("mount -t tmpfs -o size=\(size) skiff-enospc \(bundles)")
            return bundles
        }

        /// Removes task and container `id` as a user would after a fault.
        private func remove(_ cd: PrivateContainerd, _ id: String) async throws {
            _ = try await cd.ctr("task rm -f \(id)")
            #expect(try await cd.ctr("container rm \(id)").status == 0)
        }

        @Test func aShimKilledWhileItsVMBootsIsCleanedUpByContainerd() async throws {
            try await withContainerd { cd in
                let run = Task { try await cd.ctr("run -d \(Self.runtime) \(Self.image) f1 sleep 600") }
                try await waitFor("the pod's QEMU") { !skiffQEMUs(of: cd.dir).isEmpty }
                #expect(killShim(of: cd.dir, serving: "f1") == 1)
                #expect(try await run.value.status != 0, "ctr run succeeded with its shim killed")
                try await remove(cd, "f1")
                // And the next container runs.
                #expect(try await cd.ctr("run --rm \(Self.runtime) \(Self.image) f1b true").status == 0)
            }
        }

        @Test func qemuKilledWhileItBootsFailsTheRunAndLeavesNothing() async throws {
            try await withContainerd { cd in
                let run = Task { try await cd.ctr("run -d \(Self.runtime) \(Self.image) f0 sleep 600") }
                try await waitFor("the pod's QEMU") { !skiffQEMUs(of: cd.dir).isEmpty }
                // A copy of a template that dies is replaced by a VM that boots: each QEMU the
                // pod gets is killed until the run gives up.
                let done = StopFlag()
                let killer = Task {
                    while !done.isSet {
                        for pid in skiffQEMUs(of: cd.dir) { kill(pid, SIGKILL) }
                        try? await Task.sleep(for: .milliseconds(20))
                    }
                }
                let result = try await run.value
                done.set()
                await killer.value
                #expect(result.status != 0, "ctr run succeeded with its VMs killed: \(result.output)")
                try await remove(cd, "f0")
                // The shim that lost its VM serves the next container with a new one.
                #expect(try await cd.ctr("run --rm \(Self.runtime) \(Self.image) f0b true").status == 0)
            }
        }

        @Test func aShimKilledDuringAnExecIsCleanedUpByContainerd() async throws {
            try await withContainerd { cd in
                #expect(try await cd.ctr("run -d \(Self.runtime) \(Self.image) f2 sleep 600").status == 0)
                let exec = Task { try await cd.ctr("task exec --exec-id long f2 sleep 30") }
                try await Task.sleep(for: .seconds(1))
                #expect(killShim(of: cd.dir, serving: "f2") == 1)
                #expect(try await exec.value.status != 0, "the exec outlived its shim")
                try await waitForDeadShim(cd)
                try await remove(cd, "f2")
            }
        }

        @Test func qemuKilledDuringAnExecEndsTheExecAndTheTaskWhichThenDeletes() async throws {
            try await withContainerd { cd in
                #expect(try await cd.ctr("run -d \(Self.runtime) \(Self.image) f3 sleep 600").status == 0)
                let exec = Task { try await cd.ctr("task exec --exec-id long f3 sleep 30") }
                try await Task.sleep(for: .seconds(1))
                for pid in skiffQEMUs(of: cd.dir) { kill(pid, SIGKILL) }
                let ended = try await exec.value
                #expect(ended.status != 0, "an exec in a VM that died reported success: \(ended.output)")
                try await waitUntil(cd, task: "f3", shows: "STOPPED")
                #expect(try await cd.ctr("task delete f3").status == 0)
                #expect(try await cd.ctr("container delete f3").status == 0)
            }
        }

        @Test func aGuestKernelPanicStopsTheTaskWhichThenDeletes() async throws {
            try await withContainerd { cd in
                #expect(try await cd.ctr("run -d \(Self.runtime) \(Self.image) f4 sleep 600").status == 0)
                _ = await cd.shimdiag("exec", "f4 sh -c 'echo c > /proc/sysrq-trigger'")
                try await waitUntil(cd, task: "f4", shows: "STOPPED")
                #expect(skiffQEMUs(of: cd.dir).isEmpty, "QEMU outlived its guest's panic")
                #expect(try await cd.ctr("task delete f4").status == 0)
                #expect(try await cd.ctr("container delete f4").status == 0)
            }
        }

        @Test func theGuestRunningOutOfMemoryKillsTheHogNotThePod() async throws {
            try await withContainerd { cd in
                #expect(try await cd.ctr("run -d \(Self.runtime) \(Self.image) f5 sleep 600").status == 0)
                // tail keeps a line that never ends: it grows until the guest's OOM killer takes it.
                let hog = try await cd.ctr("task exec --exec-id hog f5 tail /dev/zero")
                #expect(hog.status == 137, "the hog ended with \(hog.status): \(hog.output)")
                let after = try await cd.ctr("task exec --exec-id after f5 echo alive")
                #expect(after.output == "alive\n", "the pod after the OOM: \(after.output)")
                try await killAndDelete(cd, "f5")
            }
        }

        @Test func containerdRestartedUnderLiveTasksFindsThemAndExecAndDeleteWork() async throws {
            try await withContainerd { cd in
                #expect(try await cd.ctr("run -d \(Self.runtime) \(Self.image) f6 sleep 600").status == 0)
                try cd.restart()
                #expect(try await cd.ctr("task ls").output.contains("f6"))
                let exec = try await cd.ctr("task exec --exec-id after-restart f6 echo still-here")
                #expect(exec.output == "still-here\n", "\(exec.output)")
                try await killAndDelete(cd, "f6")
            }
        }

        @Test func noSpaceWhereTheShimKeepsPodStateFailsTheRunCleanly() async throws {
            try await withContainerd { cd in
                let root = cd.dir + "/skiff"
                try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
                _ = try PrivateContainerd.shell("mount -t tmpfs -o size=4k,nr_inodes=8 skiff-enospc \(root)")
                let run = try await cd.ctr("run --rm \(Self.runtime) \(Self.image) f7 true")
                #expect(run.status != 0, "a run with no room for its state succeeded")
                _ = try await cd.ctr("container rm f7")
                let census = SkiffCensus.of(cd.dir)
                #expect(census.qemus.isEmpty && census.mounts.isEmpty, "\(census)")
                let left = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
                #expect(left.isEmpty, "left in the full state root: \(left)")
                _ = try PrivateContainerd.shell("umount \(root)")
                #expect(try await cd.ctr("run --rm \(Self.runtime) \(Self.image) f7b true").status == 0, "the next run after space came back")
            }
        }

        @Test func noSpaceWhereScratchDisksLiveFailsTheRunCleanly() async throws {
            try await withContainerd { cd in
                // A container's scratch disk (a block root's writable layer) is made in its
                // bundle, under containerd's state: 512 KiB holds a bundle but not the 600 KiB
                // mkfs.ext4 writes.
                let bundles = try mountSmallBundles(of: cd, size: "512k")
                let block = "--annotation io.skiff.rootfs=block"
                let run = try await cd.ctr("run --rm \(Self.runtime) \(block) \(Self.image) f8 true")
                #expect(run.status != 0, "a run with no room for its scratch disk succeeded")
                #expect(run.output.contains("scratch disk") && run.output.contains("No space left on device"), "\(run.output)")
                // `run --rm` removed the container after the failure.
                #expect(!(try await cd.ctr("container ls -q").output.contains("f8")))
                let census = SkiffCensus.of(cd.dir)
                #expect(census.qemus.isEmpty && census.mounts.isEmpty && census.loopDevices.isEmpty, "\(census)")
                let left = (try? FileManager.default.subpathsOfDirectory(atPath: bundles)) ?? []
                #expect(left.isEmpty, "left where scratch disks live: \(left)")
                _ = try PrivateContainerd.shell("umount \(bundles)")
                #expect(try await cd.ctr("run --rm \(Self.runtime) \(block) \(Self.image) f8b true").status == 0, "the next run after space came back")
            }
        }

        @Test func theHostFillingUnderAScratchDiskFailsTheWritesNotThePod() async throws {
            try await withContainerd { cd in
                // Room for the scratch disk's ext4 (about 600 KiB of a sparse file), little for
                // what the container writes to it: the host runs out while the guest writes.
                let bundles = try mountSmallBundles(of: cd, size: "2m")
                defer { _ = try? PrivateContainerd.shell("umount -l \(bundles)") }
                let block = "--annotation io.skiff.rootfs=block"
                #expect(try await cd.ctr("run -d \(Self.runtime) \(block) \(Self.image) f9 sleep 600").status == 0)
                let write = try await cd.ctr("task exec --exec-id fill f9 sh -c 'dd if=/dev/urandom of=/big bs=1M count=8 conv=fsync; echo dd exit $?'")
                #expect(write.output.contains("dd exit 1"), "the write past the host's space: \(write.output)")
                let after = try await cd.ctr("task exec --exec-id after f9 echo alive")
                #expect(after.output == "alive\n", "the pod after the host filled: \(after.output)")
                try await killAndDelete(cd, "f9")
            }
        }
    }
}
