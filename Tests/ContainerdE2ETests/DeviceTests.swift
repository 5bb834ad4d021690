import Foundation
import Glibc
import Testing

extension ContainerdE2E {
    /// Device assignment through ctr. These machines have no IOMMU, so no real VFIO device can
    /// be given; what a user meets here is the refusal of a group the host does not have.
    @Suite(.timeLimit(.minutes(5))) struct DeviceTests {
        static let image = ContainerdE2E.CtrRunTests.image
        static let runtime = ContainerdE2E.CtrRunTests.runtime

        @Test func aVFIOGroupTheHostDoesNotHaveIsRefusedClearlyAndTheShimServesTheNext() async throws {
            // ctr checks that a --device path exists, so the group's node is made (a character
            // device, as /dev/vfio/N is); IOMMU group 42 does not exist on this host.
            let node = "/dev/vfio/42"
            let made = access("/dev/vfio", F_OK) != 0
            _ = try PrivateContainerd.shell("mkdir -p /dev/vfio && (test -e \(node) || mknod \(node) c 243 42)")
            defer { _ = try? PrivateContainerd.shell("rm -f \(node)" + (made ? " && rmdir /dev/vfio" : "")) }
            try await withContainerd { cd async throws in
                let run = try await cd.ctr("run --rm --device \(node) \(Self.runtime) \(Self.image) vf1 true")
                #expect(run.status != 0, "\(run.output)")
                #expect(run.output.contains("IOMMU group 42 does not exist"), "\(run.output)")
                #expect(try await cd.ctr("run -d \(Self.runtime) \(Self.image) vf2 sleep 600").status == 0, "the shim serves the next")
                let devices = await cd.shimdiag("devices", "vf2")
                #expect(devices.status == 0 && devices.output.isEmpty, "no device assigned: \(devices.output)")
                #expect(try await cd.ctr("task rm -f vf2").status == 0)
                #expect(try await cd.ctr("container rm vf2").status == 0)
            }
        }
    }
}
