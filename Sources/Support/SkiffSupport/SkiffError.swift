/// The one error the service layer throws: a code (gRPC's, as containerd reads them), a
/// message for the user, and the lower layer's error that caused it, kept for logs. Lower
/// layers' errors become one through `SkiffErrorConvertible`; the RPC edges map it to a wire
/// status once.
public struct SkiffError: Error, Sendable, Equatable, CustomStringConvertible {
    /// gRPC's status codes that Skiff answers with (google.rpc.Code names them).
    public enum Code: String, Sendable, Equatable {
        case invalidArgument, notFound, alreadyExists, failedPrecondition, deadlineExceeded
        case unavailable, unimplemented, resourceExhausted, permissionDenied, `internal`
    }

    public var code: Code
    public var message: String
    /// What went wrong below, when something did.
    public var cause: (any Error)?

    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String { message }

    /// Two errors are the same when code and message are; the cause is detail.
    public static func == (lhs: SkiffError, rhs: SkiffError) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message
    }

    public static func invalidArgument(_ message: String, cause: (any Error)? = nil) -> SkiffError { .init(.invalidArgument, message, cause: cause) }
    public static func notFound(_ message: String, cause: (any Error)? = nil) -> SkiffError { .init(.notFound, message, cause: cause) }
    public static func alreadyExists(_ message: String, cause: (any Error)? = nil) -> SkiffError { .init(.alreadyExists, message, cause: cause) }
    public static func failedPrecondition(_ message: String, cause: (any Error)? = nil) -> SkiffError { .init(.failedPrecondition, message, cause: cause) }
    public static func deadlineExceeded(_ message: String, cause: (any Error)? = nil) -> SkiffError { .init(.deadlineExceeded, message, cause: cause) }
    public static func unavailable(_ message: String, cause: (any Error)? = nil) -> SkiffError { .init(.unavailable, message, cause: cause) }
    public static func unimplemented(_ message: String, cause: (any Error)? = nil) -> SkiffError { .init(.unimplemented, message, cause: cause) }
    public static func internalError(_ message: String, cause: (any Error)? = nil) -> SkiffError { .init(.internal, message, cause: cause) }
}

/// An error of a lower layer that knows which SkiffError it is.
public protocol SkiffErrorConvertible: Error, Sendable {
    var skiffError: SkiffError { get }
}
