import Logging
import TTRPC
import VMController

/// The service layer's errors, each one gRPC status on the wire to containerd.
public enum ServiceError: Error, Sendable, Equatable, TTRPCStatusConvertible, CustomStringConvertible {
    case invalidArgument(String)
    case notFound(String)
    case alreadyExists(String)
    case failedPrecondition(String)
    case unimplemented(String)
    case internalError(String)

    public var ttrpcStatus: TTRPCStatus {
        switch self {
        case let .invalidArgument(m): return TTRPCStatus(.invalidArgument, m)
        case let .notFound(m): return TTRPCStatus(.notFound, m)
        case let .alreadyExists(m): return TTRPCStatus(.alreadyExists, m)
        case let .failedPrecondition(m): return TTRPCStatus(.failedPrecondition, m)
        case let .unimplemented(m): return TTRPCStatus(.unimplemented, m)
        case let .internalError(m): return TTRPCStatus(.internal, m)
        }
    }

    public var description: String { ttrpcStatus.message }

    /// Passes a lower layer's error up with its own code.
    static func from(_ error: any Error) -> ServiceError {
        if let error = error as? ServiceError { return error }
        if let status = (error as? any TTRPCStatusConvertible)?.ttrpcStatus {
            switch status.code {
            case .invalidArgument: return .invalidArgument(status.message)
            case .notFound: return .notFound(status.message)
            case .alreadyExists: return .alreadyExists(status.message)
            case .failedPrecondition: return .failedPrecondition(status.message)
            default: return .internalError(status.message)
            }
        }
        return .internalError("\(error)")
    }
}

/// Runs one call of a ttrpc service: an error leaves as its ServiceError (and so its gRPC
/// status), and is logged with what was called.
func serviceCall<T>(_ what: String, logger: Logger, _ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch {
        let mapped = ServiceError.from(error)
        logger.warning("\(what): \(mapped.ttrpcStatus)")
        throw mapped
    }
}
