import Logging
import PodController
import SkiffSupport
import TTRPC

/// The RPC edge: the one place a `SkiffError` becomes a wire status.
extension TTRPCStatus {
    init(_ error: SkiffError) {
        let code: TTRPCStatus.Code
        switch error.code {
        case .invalidArgument: code = .invalidArgument
        case .notFound: code = .notFound
        case .alreadyExists: code = .alreadyExists
        case .failedPrecondition: code = .failedPrecondition
        case .deadlineExceeded: code = .deadlineExceeded
        case .unavailable: code = .unavailable
        case .unimplemented: code = .unimplemented
        case .resourceExhausted: code = .resourceExhausted
        case .permissionDenied: code = .permissionDenied
        case .internal: code = .internal
        }
        self.init(code, error.message)
    }
}

/// Runs one call of a ttrpc service: an error leaves as its gRPC status, mapped once here,
/// and is logged with what was called and what caused it.
func serviceCall<T>(_ what: String, logger: Logger, _ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch {
        let mapped = SkiffError.wrapping(error)
        let status = TTRPCStatus(mapped)
        if let cause = mapped.cause {
            logger.warning("\(what): \(status) (cause: \(cause))")
        } else {
            logger.warning("\(what): \(status)")
        }
        throw status
    }
}
