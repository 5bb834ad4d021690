/// What a server-side handler knows about the call it is serving.
public struct TTRPCServerContext: Sendable {
    /// Fully qualified service name, e.g. `containerd.task.v2.Task`.
    public let service: String
    public let method: String
    public let metadata: TTRPCMetadata
    /// When the caller stops waiting (from the request's `timeout_nano`), or nil for no limit.
    /// At this instant the handler's task is cancelled; a handler that lets the resulting
    /// `CancellationError` escape answers DeadlineExceeded.
    public let deadline: ContinuousClock.Instant?
    public let streamID: UInt32

    public init(
        service: String, method: String, metadata: TTRPCMetadata = TTRPCMetadata(),
        deadline: ContinuousClock.Instant? = nil, streamID: UInt32 = 1
    ) {
        self.service = service
        self.method = method
        self.metadata = metadata
        self.deadline = deadline
        self.streamID = streamID
    }

    /// The time left before the deadline, or nil when there is none.
    public var timeRemaining: Duration? {
        deadline.map { $0 - ContinuousClock.now }
    }
}
