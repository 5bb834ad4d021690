import Glibc
import Synchronization

/// Named points of a pod's life where the fault suite stops the shim, to kill it or its QEMU
/// at exactly that point.
///
/// When the shim's environment has `SKIFF_FAULT_STOP` (a comma-separated list of phase names,
/// for example `before-qemu,scsi-attach`), the shim stops itself with SIGSTOP the first time
/// it reaches each named phase; a test sees the process stopped (state `T` in
/// /proc/PID/stat), does its harm, and lets the shim go on with SIGCONT (or kills it).
/// containerd passes its environment to the shims it starts, so a private containerd started
/// with the variable makes every shim of its stop there. Without the variable (the normal
/// case) reaching a phase costs one set lookup and does nothing.
public enum FaultStop: String, CaseIterable, Sendable {
    /// The VM's state directory and handles file exist; QEMU is not yet started.
    case beforeQEMU = "before-qemu"
    /// The VM runs and the container is created in it; its Start has not reached the guest.
    case beforeStart = "before-start"
    /// The guest has started the container's process; containerd has not been answered.
    case duringStart = "start"
    /// A Delete of a stopped container, before the host and guest resources are released.
    case duringDelete = "delete"
    /// A SCSI disk's block node exists in QEMU; its device is not yet added.
    case duringSCSIAttach = "scsi-attach"
    /// A pod interface's tap and tc mirror exist; the NIC is not yet in the VM.
    case duringNetworkSetup = "network"

    /// The environment variable that names the phases to stop at.
    public static let variable = "SKIFF_FAULT_STOP"

    private static let armed: Set<String> = {
        guard let raw = getenv(variable) else { return [] }
        return Set(String(cString: raw).split(separator: ",").map(String.init))
    }()
    private static let reached = Mutex<Set<String>>([])

    /// Stops the whole process (SIGSTOP) if this phase is armed and reached for the first time.
    public func reach() {
        guard Self.armed.contains(rawValue) else { return }
        let first = Self.reached.withLock { $0.insert(rawValue).inserted }
        if first { raise(SIGSTOP) }
    }
}
