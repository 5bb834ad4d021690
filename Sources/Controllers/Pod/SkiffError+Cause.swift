import SkiffSupport
import StdioMux
import TTRPC

extension SkiffError {
    /// A lower layer's error as the service layer's one, keeping it as the cause. Its code
    /// comes from what the error says it is: a gRPC status from the agent (a lost connection is
    /// Unavailable, a timeout DeadlineExceeded), a VM controller error's status (a boot that
    /// timed out is DeadlineExceeded), a lost stdio channel (Unavailable); else Internal.
    /// `context` prefixes the message ("start c1: ...").
    public static func wrapping(_ error: any Error, _ context: String? = nil) -> SkiffError {
        if let error = error as? SkiffError {
            guard let context else { return error }
            return SkiffError(error.code, "\(context): \(error.message)", cause: error.cause ?? error)
        }
        let code: Code
        let message: String
        if let status = (error as? any TTRPCStatusConvertible)?.ttrpcStatus {
            code = Self.code(status.code)
            message = status.message
        } else if let convertible = error as? any SkiffErrorConvertible {
            code = convertible.skiffError.code
            message = convertible.skiffError.message
        } else if error is MuxError {
            code = .unavailable
            message = "the VM's stdio channel: \(error)"
        } else {
            code = .internal
            message = "\(error)"
        }
        return SkiffError(code, context.map { "\($0): \(message)" } ?? message, cause: error)
    }

    static func code(_ code: TTRPCStatus.Code) -> Code {
        switch code {
        case .invalidArgument: return .invalidArgument
        case .notFound: return .notFound
        case .alreadyExists: return .alreadyExists
        case .failedPrecondition: return .failedPrecondition
        case .deadlineExceeded: return .deadlineExceeded
        case .unavailable: return .unavailable
        case .unimplemented: return .unimplemented
        case .resourceExhausted: return .resourceExhausted
        case .permissionDenied: return .permissionDenied
        default: return .internal
        }
    }
}

/// Runs `body`, whose errors become SkiffErrors with `context`.
func guestCall<T>(_ context: String, isolation: isolated (any Actor)? = #isolation,
                  _ body: () async throws -> T) async throws(SkiffError) -> T {
    do { return try await body() } catch { throw SkiffError.wrapping(error, context) }
}
