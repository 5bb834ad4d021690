import TTRPC

/// The shim process layer's errors (arguments, sockets, bootstrap), one gRPC status each.
public enum ShimError: Error, Sendable, Equatable, TTRPCStatusConvertible, CustomStringConvertible {
    case invalidArgument(String)
    case failedPrecondition(String)
    case system(String)

    public var ttrpcStatus: TTRPCStatus {
        switch self {
        case let .invalidArgument(m): return TTRPCStatus(.invalidArgument, m)
        case let .failedPrecondition(m): return TTRPCStatus(.failedPrecondition, m)
        case let .system(m): return TTRPCStatus(.internal, m)
        }
    }

    public var description: String {
        switch self {
        case let .invalidArgument(m), let .failedPrecondition(m), let .system(m): return m
        }
    }
}
