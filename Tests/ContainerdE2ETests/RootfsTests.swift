import Foundation
import Glibc
import Testing

extension ContainerdE2E {
    /// Containers' roots on block devices (`io.skiff.rootfs=block`): erofs layers (a cache on
    /// the host) and an ext4 scratch disk over SCSI, assembled by an overlay in the guest.
    @Suite(.timeLimit(.minutes(5))) struct RootfsTests {
        static let image = ContainerdE2E.CtrRunTests.image
        static let runtime = ContainerdE2E.CtrRunTests.runtime + " --annotation io.skiff.rootfs=block"
        static let cache = "/var/lib/skiff/layers"

        private func cachedImages() -> Set<String> {
            Set(((try? FileManager.default.contentsOfDirectory(atPath: Self.cache)) ?? []).filter { $0.hasSuffix(".erofs") })
        }

        @Test func aContainerWritesAndReadsTwoThousandFilesOnItsScratchDisk() async throws {
            try await withContainerd { cd async throws in
                let script = "mkdir /data; i=0; while [ $i -lt 2000 ]; do echo $i > /data/f$i; i=$((i+1)); done; ls /data | wc -l; cat /data/f1999; grep \" / \" /proc/mounts | cut -d\" \" -f3"
                let run = try await cd.ctr("run --rm \(Self.runtime) \(Self.image) rf1 sh -c '\(script)'")
                #expect(run.status == 0, "\(run.output)\n\(cd.logTail())")
                #expect(run.output.split(separator: "\n").map(String.init) == ["2000", "1999", "overlay"], "\(run.output)")
            }
        }

        @Test func thePodsContainersShareTheirLayerDisksAndASecondPodHitsTheCache() async throws {
            try await withContainerd { cd async throws in
                let pod = "--annotation io.kubernetes.cri.sandbox-id=layers1"
                let first = try await cd.ctr("run -d \(pod) \(Self.runtime) \(Self.image) la sleep 600")
                #expect(first.status == 0, "\(first.output)\n\(cd.logTail())")
                let afterFirst = cachedImages()
                let second = try await cd.ctr("run -d \(pod) \(Self.runtime) \(Self.image) lb sleep 600")
                #expect(second.status == 0, "\(second.output)\n\(cd.logTail())")
                // One layer disk for both, and a scratch disk each.
                let disks = await cd.shimdiag("exec", "layers1 grep -c ^/dev/sd /proc/mounts")
                #expect(disks.output.trimmingCharacters(in: .whitespacesAndNewlines) == "3", "\(disks.output)")
                let other = try await cd.ctr("run --rm \(Self.runtime) \(Self.image) other true")
                #expect(other.status == 0, "\(other.output)\n\(cd.logTail())")
                #expect(cachedImages() == afterFirst, "the second pod made no new layer image")
                for id in ["la", "lb"] {
                    #expect(try await cd.ctr("task rm -f \(id)").status == 0)
                    #expect(try await cd.ctr("container rm \(id)").status == 0)
                }
            }
        }

        @Test func aFullScratchDiskIsTheContainersENOSPCAndLeavesNothing() async throws {
            try await withContainerd { cd async throws in
                let run = try await cd.ctr("run --rm --annotation io.skiff.scratch-mib=16 \(Self.runtime) \(Self.image) full sh -c 'dd if=/dev/zero of=/big bs=1M count=64; echo dd exit $?'")
                #expect(run.output.contains("No space left on device"), "\(run.output)")
                #expect(run.output.contains("dd exit 1"), "\(run.output)")
            }
        }

        @Test func sigkillOfTheShimLeavesNoDiskMountOrFileButTheCache() async throws {
            try await withContainerd { cd async throws in
                let run = try await cd.ctr("run -d \(Self.runtime) \(Self.image) kb sleep 600")
                #expect(run.status == 0, "\(run.output)\n\(cd.logTail())")
                let scratch = try PrivateContainerd.shell("find \(cd.dir) -name 'skiff-scratch.ext4'")
                #expect(!scratch.isEmpty, "the running container has its scratch disk")
                let cached = cachedImages()
                #expect(killShim(of: cd.dir, serving: "kb") == 1)
                try await waitForDeadShim(cd)
                _ = try await cd.ctr("task delete kb")
                #expect(try await cd.ctr("container delete kb").status == 0)
                for _ in 0..<100 where !skiffQEMUs(of: cd.dir).isEmpty { try await Task.sleep(for: .milliseconds(50)) }
                let left = try PrivateContainerd.shell("find \(cd.dir) -name 'skiff-*.ext4' -o -name 'skiff-*.erofs'")
                #expect(left.isEmpty, "no scratch disk or upper image left: \(left)")
                let mounts = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
                #expect(!mounts.contains(cd.dir + "/"), "nothing of this containerd's is mounted")
                let loops = try PrivateContainerd.shell("losetup -a")
                #expect(!loops.contains(cd.dir) && !loops.contains(Self.cache), "no loop device: \(loops)")
                #expect(cachedImages() == cached, "the layer cache stays as it was")
            }
        }

        @Test func withoutTheAnnotationTheRootIsTheHostsOverlayOverNineP() async throws {
            try await withContainerd { cd async throws in
                let run = try await cd.ctr("run --rm \(ContainerdE2E.CtrRunTests.runtime) \(Self.image) ninep sh -c \"grep ' / ' /proc/mounts | cut -d' ' -f3\"")
                #expect(run.status == 0 && run.output == "9p\n", "\(run.output)")
                let bad = try await cd.ctr("run --rm --annotation io.skiff.rootfs=nfs \(ContainerdE2E.CtrRunTests.runtime) \(Self.image) badroot true")
                #expect(bad.status != 0 && bad.output.contains("block or 9p"), "\(bad.output)")
            }
        }
    }
}
