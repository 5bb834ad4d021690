@testable import GuestAgent
import Testing

/// modules.softdep's "post:" lists, which modprobe would load after a module and the agent
/// loads the same way (vfio's vfio_iommu_type1, without which VFIO_SET_IOMMU fails).
@Suite struct ModuleLoaderTests {
    @Test func postSoftDependenciesAreReadAndPreOnesAreNot() {
        let line: Substring = "softdep vfio pre: irq-bypass post: vfio_iommu_type1 vfio-iommu-spapr-tce"
        let parsed = ModuleLoader.postDependencies(line)
        #expect(parsed?.0 == "vfio")
        #expect(parsed?.1 == ["vfio_iommu_type1", "vfio_iommu_spapr_tce"])
        #expect(ModuleLoader.postDependencies("softdep crc32c_generic pre: crc32c_intel") == nil)
        #expect(ModuleLoader.postDependencies("# comment") == nil)
    }
}
