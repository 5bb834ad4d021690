import GuestManager
import TTRPC

/// Everything the VM controller fails with, each case one gRPC status, so the service layer
/// passes it up unchanged.
public enum VMControllerError: Error, Sendable, Equatable, TTRPCStatusConvertible, CustomStringConvertible {
    /// The call is not valid in the VM's current state.
    case wrongState(operation: String, state: VMState)
    /// Bad input (a relative share path, an unknown reservation).
    case invalidArgument(String)
    case notFound(String)
    /// Starting the VM failed; `state` is where it was left, `cause` the guest connection's
    /// failure when that is what failed (a boot timeout, a lost agent).
    case startFailed(String, state: VMState, cause: GuestManagerError? = nil)
    /// Releasing host resources failed; the VM is Invalid until a TerminateVM succeeds.
    case cleanupFailed(String)
    /// A host or guest operation failed.
    case operationFailed(String)

    public var ttrpcStatus: TTRPCStatus {
        switch self {
        case .wrongState: return TTRPCStatus(.failedPrecondition, description)
        case .invalidArgument: return TTRPCStatus(.invalidArgument, description)
        case .notFound: return TTRPCStatus(.notFound, description)
        case let .startFailed(_, _, cause?): return TTRPCStatus(cause.ttrpcStatus.code, description)
        case .startFailed, .cleanupFailed, .operationFailed: return TTRPCStatus(.internal, description)
        }
    }

    public var description: String {
        switch self {
        case let .wrongState(operation, state): return "\(operation) is not possible while the VM is \(state)"
        case let .invalidArgument(m), let .notFound(m), let .operationFailed(m): return m
        case let .startFailed(m, state, _): return "starting the VM failed (now \(state)): \(m)"
        case let .cleanupFailed(m): return "releasing the VM's host resources failed: \(m)"
        }
    }
}
