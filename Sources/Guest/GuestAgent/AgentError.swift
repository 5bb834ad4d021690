import Glibc
import TTRPC

/// Everything the guest agent refuses or fails with, each case one gRPC status on the wire.
public enum AgentError: Error, Sendable, Equatable, TTRPCStatusConvertible, CustomStringConvertible {
    case invalidArgument(String)
    case notFound(String)
    case alreadyExists(String)
    case failedPrecondition(String)
    /// Something the agent waits for did not happen in time.
    case deadlineExceeded(String)
    /// A system call failed: what was attempted and errno.
    case system(String, Int32)

    public var ttrpcStatus: TTRPCStatus {
        switch self {
        case let .invalidArgument(message): return TTRPCStatus(.invalidArgument, message)
        case let .notFound(message): return TTRPCStatus(.notFound, message)
        case let .alreadyExists(message): return TTRPCStatus(.alreadyExists, message)
        case let .failedPrecondition(message): return TTRPCStatus(.failedPrecondition, message)
        case let .deadlineExceeded(message): return TTRPCStatus(.deadlineExceeded, message)
        case let .system(_, code):
            let status: TTRPCStatus.Code = code == ENOENT ? .notFound : code == EACCES || code == EPERM ? .permissionDenied : .internal
            return TTRPCStatus(status, description)
        }
    }

    public var description: String {
        switch self {
        case let .invalidArgument(m), let .notFound(m), let .alreadyExists(m), let .failedPrecondition(m), let .deadlineExceeded(m): return m
        case let .system(what, code): return "\(what): \(String(cString: strerror(code)))"
        }
    }

    /// `.system` with the current errno.
    static func errno(_ what: String) -> AgentError { .system(what, Glibc.errno) }
}
