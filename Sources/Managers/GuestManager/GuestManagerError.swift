import TTRPC

/// Everything the guest manager can fail with, each case one gRPC status.
public enum GuestManagerError: Error, Sendable, Equatable, TTRPCStatusConvertible, CustomStringConvertible {
    /// The agent did not answer in time; carries the end of the VM's console log.
    case bootTimedOut(after: Duration, console: String)
    /// The VM exited before its agent answered; carries how, and the end of the console log.
    case vmExitedDuringBoot(String, console: String)
    /// The connection to the agent failed or closed.
    case disconnected(String)

    public var ttrpcStatus: TTRPCStatus {
        switch self {
        case .bootTimedOut: return TTRPCStatus(.deadlineExceeded, description)
        case .vmExitedDuringBoot: return TTRPCStatus(.failedPrecondition, description)
        case .disconnected: return TTRPCStatus(.unavailable, description)
        }
    }

    public var description: String {
        switch self {
        case let .bootTimedOut(after, console):
            return "the guest agent did not answer within \(after); console log ends with:\n\(console)"
        case let .vmExitedDuringBoot(how, console):
            return "the VM \(how) before its agent answered; console log ends with:\n\(console)"
        case let .disconnected(message):
            return "guest agent connection: \(message)"
        }
    }
}
