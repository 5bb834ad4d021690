import Foundation
import SwiftProtobuf

/// The part of an OCI `LinuxResources` that Update applies, from the JSON containerd sends
/// in `UpdateTaskRequest.resources` (an Any whose value is JSON, as containerd marshals it).
struct LinuxResources: Equatable {
    var memoryLimit: Int64?
    var pidsLimit: Int64?
    var cpuQuota: Int64?
    var cpuPeriod: UInt64?

    static func decode(_ any: Google_Protobuf_Any) throws(ServiceError) -> LinuxResources {
        guard !any.value.isEmpty else { throw .invalidArgument("Update carries no resources") }
        guard let json = try? JSONSerialization.jsonObject(with: any.value) as? [String: Any] else {
            throw .invalidArgument("Update resources are not an OCI LinuxResources JSON object")
        }
        var resources = LinuxResources()
        if let memory = json["memory"] as? [String: Any] { resources.memoryLimit = (memory["limit"] as? NSNumber)?.int64Value }
        if let pids = json["pids"] as? [String: Any] { resources.pidsLimit = (pids["limit"] as? NSNumber)?.int64Value }
        if let cpu = json["cpu"] as? [String: Any] {
            resources.cpuQuota = (cpu["quota"] as? NSNumber)?.int64Value
            resources.cpuPeriod = (cpu["period"] as? NSNumber)?.uint64Value
        }
        return resources
    }
}
