import Foundation
import ShimProcess
import VMController

/// One container of the pod: its bundle, its shares in the VM, its init process and the
/// processes added to it with Exec.
struct Container {
    let id: String
    let bundle: TaskBundle
    /// Its shares in the VM: the bundle first, then the sources of the spec's bind mounts.
    let shares: [Plan9Controller.ShareID]
    /// The bundle as the guest sees it (through the Plan9 share).
    let guestBundle: String
    /// Below /sys/fs/cgroup in the guest.
    let cgroupPath: String
    /// The init process, which the guest agent knows by the container's id.
    var process: ProcessRecord
    /// Processes added with Exec, by exec id.
    var execs: [String: ExecProcess] = [:]
}

/// A process added to a running container with Exec: `crun exec` of a process spec that the
/// shim writes into the bundle, which the guest sees through the share.
struct ExecProcess {
    /// The process spec's file name in the bundle.
    let specName: String
    /// The agent knows it as "CONTAINER.exec.EXEC".
    var process: ProcessRecord

    static func agentID(containerID: String, execID: String) -> String { "\(containerID).exec.\(execID)" }
}
