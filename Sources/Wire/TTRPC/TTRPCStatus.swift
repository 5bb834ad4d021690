import SwiftProtobuf

/// A ttrpc call's outcome as a gRPC status: the error thrown by clients when a call fails and
/// thrown by handlers to fail a call with a specific code.
public struct TTRPCStatus: Error, Sendable, Hashable, CustomStringConvertible {
    /// A gRPC status code. Unknown numeric values survive a round trip.
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public var rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }

        public static let ok = Code(rawValue: 0)
        public static let cancelled = Code(rawValue: 1)
        public static let unknown = Code(rawValue: 2)
        public static let invalidArgument = Code(rawValue: 3)
        public static let deadlineExceeded = Code(rawValue: 4)
        public static let notFound = Code(rawValue: 5)
        public static let alreadyExists = Code(rawValue: 6)
        public static let permissionDenied = Code(rawValue: 7)
        public static let resourceExhausted = Code(rawValue: 8)
        public static let failedPrecondition = Code(rawValue: 9)
        public static let aborted = Code(rawValue: 10)
        public static let outOfRange = Code(rawValue: 11)
        public static let unimplemented = Code(rawValue: 12)
        public static let `internal` = Code(rawValue: 13)
        public static let unavailable = Code(rawValue: 14)
        public static let dataLoss = Code(rawValue: 15)
        public static let unauthenticated = Code(rawValue: 16)

        private static let names = [
            "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
            "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
            "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
            "Unauthenticated",
        ]

        /// The name gRPC gives the code (`NotFound`), or `Code(N)` for values it does not define.
        public var description: String {
            Self.names.indices.contains(Int(rawValue)) ? Self.names[Int(rawValue)] : "Code(\(rawValue))"
        }
    }

    public var code: Code
    public var message: String
    /// Typed details (google.rpc.Status.details), passed through untouched.
    public var details: [Google_Protobuf_Any]

    public init(_ code: Code, _ message: String = "", details: [Google_Protobuf_Any] = []) {
        self.code = code
        self.message = message
        self.details = details
    }

    public var description: String { "\(code): \(message)" }

    init(wire: Google_Rpc_Status) {
        self.init(Code(rawValue: wire.code), wire.message, details: wire.details)
    }

    var wire: Google_Rpc_Status {
        var status = Google_Rpc_Status()
        status.code = code.rawValue
        status.message = message
        status.details = details
        return status
    }
}

/// An error that knows the gRPC status it should travel as. Each layer's error type conforms,
/// so a handler can throw it and the caller sees the right code.
public protocol TTRPCStatusConvertible: Error {
    var ttrpcStatus: TTRPCStatus { get }
}

extension TTRPCStatus: TTRPCStatusConvertible {
    public var ttrpcStatus: TTRPCStatus { self }
}
