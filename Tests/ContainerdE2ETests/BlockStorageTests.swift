import Foundation
import Glibc
import Testing

extension ContainerdE2E {
    /// The spec's block storage through ctr: a filesystem image mounted into a container
    /// (`--mount type=ext4,src=IMAGE`) and a host block device given as a device (`--device`),
    /// both over SCSI, with what the container wrote read back on the host afterwards.
    @Suite(.timeLimit(.minutes(5))) struct BlockStorageTests {
        static let image = ContainerdE2E.CtrRunTests.image
        static let runtime = ContainerdE2E.CtrRunTests.runtime

        private func scratchDirectory() throws -> String {
            let dir = "/tmp/skiff-blockvol-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: dir + "/tree", withIntermediateDirectories: true)
            return dir
        }

        @Test func filesystemImagesAreMountedIntoTheContainerAndItsWritesReachTheImage() async throws {
            let dir = try scratchDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try "hello from an erofs image\n".write(toFile: dir + "/tree/hello.txt", atomically: true, encoding: .utf8)
            _ = try PrivateContainerd.shell("truncate -s 32M \(dir)/data.ext4 && mkfs.ext4 -q -F \(dir)/data.ext4 && mkfs.erofs \(dir)/ro.erofs \(dir)/tree")
            try await withContainerd { cd async throws in
                let script = "cat /ro/hello.txt; echo written in the VM > /data/note; touch /ro/x 2>/dev/null || echo ro refused; "
                    + "grep -E ' /(data|ro) ' /proc/mounts | cut -d' ' -f2,3,4 | cut -d, -f1"
                let run = try await cd.ctr("run --rm --mount type=ext4,src=\(dir)/data.ext4,dst=/data,options=rw "
                    + "--mount type=erofs,src=\(dir)/ro.erofs,dst=/ro,options=ro \(Self.runtime) \(Self.image) bv1 sh -c \"\(script)\"")
                #expect(run.status == 0, "\(run.output)")
                let lines = run.output.split(separator: "\n").map(String.init)
                #expect(lines.first == "hello from an erofs image", "\(run.output)")
                #expect(lines.contains("ro refused"), "\(run.output)")
                #expect(lines.contains("/data ext4 rw") && lines.contains("/ro erofs ro"), "a disk filesystem, not 9p: \(run.output)")
            }
            let note = try PrivateContainerd.shell("debugfs -R 'cat /note' \(dir)/data.ext4 2>/dev/null")
            #expect(note == "written in the VM\n", "the image holds the container's write: \(note)")
        }

        @Test func aHostBlockDeviceIsARawDeviceInTheContainer() async throws {
            let dir = try scratchDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            _ = try PrivateContainerd.shell("truncate -s 8M \(dir)/disk.img && printf skiff-block-marker | dd of=\(dir)/disk.img conv=notrunc 2>/dev/null")
            let loop = try PrivateContainerd.shell("losetup -f --show \(dir)/disk.img").trimmingCharacters(in: .whitespacesAndNewlines)
            defer { _ = try? PrivateContainerd.shell("losetup -d \(loop)") }
            try await withContainerd { cd async throws in
                let script = "head -c 18 \(loop); echo; echo from-the-container | dd of=\(loop) bs=512 seek=8 conv=notrunc 2>/dev/null; ls -l \(loop)"
                let run = try await cd.ctr("run --rm --device \(loop) \(Self.runtime) \(Self.image) bv2 sh -c \"\(script)\"")
                #expect(run.status == 0, "\(run.output)")
                let lines = run.output.split(separator: "\n").map(String.init)
                #expect(lines.first == "skiff-block-marker", "the container reads the host device: \(run.output)")
                // The guest's SCSI disk (sd, major 8), not the host's loop device (major 7).
                #expect(lines.last?.hasPrefix("brw") == true && lines.last?.contains(" 8, ") == true, "\(run.output)")
            }
            _ = try PrivateContainerd.shell("losetup -d \(loop)")
            let written = try PrivateContainerd.shell("dd if=\(dir)/disk.img bs=512 skip=8 count=1 2>/dev/null | head -c 18")
            #expect(written == "from-the-container", "the device holds the container's write: \(written)")
        }

        @Test func aDeviceMountWhoseSourceIsMissingIsRefusedAndTheShimServesTheNext() async throws {
            try await withContainerd { cd async throws in
                let run = try await cd.ctr("run --rm --mount type=ext4,src=/tmp/skiff-no-such-image.ext4,dst=/data,options=rw \(Self.runtime) \(Self.image) bv3 true")
                #expect(run.status != 0 && run.output.contains("does not exist"), "\(run.output)")
                let next = try await cd.ctr("run --rm \(Self.runtime) \(Self.image) bv4 echo served")
                #expect(next.status == 0 && next.output == "served\n", "\(next.output)")
            }
        }
    }
}
