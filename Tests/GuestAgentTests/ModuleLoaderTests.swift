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

/// On-demand module groups: loaded the first time something needs them, once however many
/// ask at the same time, and not at all when the boot loaded them early.
@Suite struct OnDemandModuleTests {
    final class Calls: Sendable {
        let groups = Locked<[[String]]>([])
    }

    @Test func aGroupLoadsOnceForConcurrentCallersAndNotWhenLoadedEarly() async {
        let calls = Calls()
        let service = AgentService(reaper: ExitReaper(mode: .ownChildren), loadModules: { group in
            calls.groups.withLock { $0.append(group) }
            try? await Task.sleep(for: .milliseconds(50))
        })
        await withTaskGroup(of: Void.self) { tasks in
            for _ in 0..<5 { tasks.addTask { await service.modulesReady(ModuleLoader.scsiModules) } }
        }
        #expect(calls.groups.withLock { $0 } == [ModuleLoader.scsiModules])
        service.markModulesLoaded(ModuleLoader.diskFilesystemModules)
        await service.modulesReady(ModuleLoader.diskFilesystemModules)
        await service.modulesReady(ModuleLoader.networkModules)
        #expect(calls.groups.withLock { $0 } == [ModuleLoader.scsiModules, ModuleLoader.networkModules])
    }
}
