/// Per-call settings on the client side.
public struct TTRPCCallOptions: Sendable {
    /// How long to wait for the answer. It travels as the request's `timeout_nano`, and the
    /// call fails DeadlineExceeded locally when it runs out.
    public var timeout: Duration?
    /// Sent with the request (`Request.metadata`).
    public var metadata: TTRPCMetadata

    public init(timeout: Duration? = nil, metadata: TTRPCMetadata = TTRPCMetadata()) {
        self.timeout = timeout
        self.metadata = metadata
    }
}

extension Duration {
    /// The duration in whole nanoseconds, clamped to Int64.
    var nanosecondsClamped: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        let (total, overflow2) = scaled.addingReportingOverflow(attoseconds / 1_000_000_000)
        return overflow2 ? (seconds < 0 ? .min : .max) : total
    }
}
