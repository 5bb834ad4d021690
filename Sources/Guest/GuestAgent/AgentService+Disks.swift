import AgentAPI
import SwiftProtobuf
import TTRPC

extension AgentService {
    public func mountSCSIDisk(_ request: Skiff_Agent_V1_MountSCSIDiskRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_MountSCSIDiskResponse {
        // The SCSI driver, and the disk's filesystem when it is mounted, load on first use.
        await modulesReady(ModuleLoader.scsiModules)
        if !request.path.isEmpty { await modulesReady(ModuleLoader.diskFilesystemModules) }
        return try await disks.mount(request)
    }

    public func ejectSCSIDisk(_ request: Skiff_Agent_V1_SCSIDiskAddress, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_Empty {
        try disks.eject(request)
        return .init()
    }
}

extension AgentService {
    public func mountOverlay(_ request: Skiff_Agent_V1_MountOverlayRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_Empty {
        // Its lowers are erofs disks, mounted before; overlay came with the guest's root.
        await modulesReady(ModuleLoader.diskFilesystemModules)
        let paths = request.lowers + [request.scratch, request.target]
        guard !request.lowers.isEmpty, paths.allSatisfy({ $0.hasPrefix("/") && !$0.split(separator: "/").contains("..") && !$0.contains(",") && !$0.contains(":") }) else {
            throw AgentError.invalidArgument("an overlay needs lower layers and absolute paths without '..', ',' or ':'")
        }
        if SCSIDisks.mountSource(of: request.target) == "overlay" { return .init() }
        try Mounts.makeDirectories(request.scratch + "/upper")
        try Mounts.makeDirectories(request.scratch + "/work")
        try Mounts.mount(source: "overlay", target: request.target, fstype: "overlay", options: [
            "lowerdir=" + request.lowers.joined(separator: ":"), "upperdir=\(request.scratch)/upper", "workdir=\(request.scratch)/work",
        ])
        return .init()
    }
}

extension AgentService {
    public func waitPCIDevice(_ request: Skiff_Agent_V1_WaitPCIDeviceRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_WaitPCIDeviceResponse {
        // A driver to bind to (driver_override) is loaded when asked for; the others that
        // bind by themselves (virtio_pci) are in from the boot.
        await allModulesReadyWait()
        return try await pci.wait(request)
    }
}
