import AgentAPI
import FoundationEssentials
import Glibc
import SkiffSupport
import SwiftProtobuf

/// The part of an OCI `LinuxResources` that Update applies, from the JSON containerd sends
/// in `UpdateTaskRequest.resources` (an Any whose value is JSON, as containerd marshals it).
struct LinuxResources: Equatable {
    var memoryLimit: Int64?
    var pidsLimit: Int64?
    var cpuQuota: Int64?
    var cpuPeriod: UInt64?

    /// InvalidArgument for an empty Any or one that is not an OCI LinuxResources object.
    static func decode(_ any: Google_Protobuf_Any) throws(SkiffError) -> LinuxResources {
        guard !any.value.isEmpty else { throw .invalidArgument("Update carries no resources") }
        let resources: OCISpec.Resources
        do { resources = try JSONDecoder().decode(OCISpec.Resources.self, from: any.value) } catch {
            throw .invalidArgument("Update resources are not an OCI LinuxResources JSON object: \(error)", cause: error)
        }
        return LinuxResources(memoryLimit: resources.memory?.limit, pidsLimit: resources.pids?.limit,
                              cpuQuota: resources.cpu?.quota, cpuPeriod: resources.cpu?.period)
    }

    /// The agent's request writing these limits to the container's cgroup.
    func agentRequest(containerID: String) -> Skiff_Agent_V1_UpdateContainerRequest {
        .with {
            $0.containerID = containerID
            if let memoryLimit { $0.memoryLimitBytes = memoryLimit }
            if let pidsLimit { $0.pidsLimit = pidsLimit }
            if let cpuQuota { $0.cpuQuotaUsec = cpuQuota }
            if let cpuPeriod { $0.cpuPeriodUsec = cpuPeriod }
        }
    }
}
