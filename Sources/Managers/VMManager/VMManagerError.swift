/// Everything the VM manager layer can fail with. Each case maps to one gRPC status, so the
/// layers above can pass it up unchanged.
public enum VMManagerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The VM document asks for something QEMU cannot do.
    case invalidConfiguration(String)
    /// QEMU could not be started or exited before it was ready.
    case startFailed(String)
    /// A QMP command failed: QEMU's error class and description.
    case qmp(errorClass: String, description: String)
    /// The QMP connection is gone (QEMU exited or closed it).
    case disconnected(String)
    /// QEMU did not do something in time.
    case timedOut(String)
    /// The operation needs a state the VM is not in.
    case notRunning(String)

    public var description: String {
        switch self {
        case let .invalidConfiguration(message): return "invalid VM configuration: \(message)"
        case let .startFailed(message): return "QEMU failed to start: \(message)"
        case let .qmp(errorClass, description): return "QMP \(errorClass): \(description)"
        case let .disconnected(message): return "QMP disconnected: \(message)"
        case let .timedOut(message): return "timed out: \(message)"
        case let .notRunning(message): return "VM not running: \(message)"
        }
    }
}
