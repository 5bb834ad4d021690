import ContainerdAPI
import FoundationEssentials
import Glibc
import Logging
import PodController
import SwiftProtobuf
import TTRPC

/// Sends task events to containerd (`Events/Forward` on TTRPC_ADDRESS) in the order they were
/// published: one queue, drained by one forwarder, with retries while containerd is briefly
/// unreachable.
public actor EventPublisher: TaskEvents {
    private let address: String
    private let namespace: String
    private let logger: Logger
    private var queue: [Containerd_Services_Events_Ttrpc_V1_Envelope] = []
    private var draining = false
    private var client: TTRPCClient?

    public init(address: String, namespace: String, logger: Logger) {
        self.address = address
        self.namespace = namespace
        self.logger = logger
    }

    /// Queues `event` under `topic` (for example `/tasks/exit`); the Any's type URL is the
    /// bare message name, as containerd expects.
    public func publish(topic: String, _ event: any SwiftProtobuf.Message) {
        var envelope = Containerd_Services_Events_Ttrpc_V1_Envelope()
        envelope.timestamp = Google_Protobuf_Timestamp(date: Date())
        envelope.namespace = namespace
        envelope.topic = topic
        var any = Google_Protobuf_Any()
        any.typeURL = type(of: event).protoMessageName
        any.value = (try? event.serializedData()) ?? Data()
        envelope.event = any
        queue.append(envelope)
        if !draining {
            draining = true
            Task { await drain() }
        }
    }

    /// Waits until every queued event has been sent (or given up on).
    public func flush() async {
        while draining { try? await Task.sleep(for: .milliseconds(5)) }
    }

    private func drain() async {
        while !queue.isEmpty {
            let envelope = queue.removeFirst()
            var attempt = 0
            while true {
                do {
                    try await send(envelope)
                    break
                } catch {
                    attempt += 1
                    client = nil
                    if attempt >= 5 {
                        logger.error("dropping event \(envelope.topic) after \(attempt) attempts: \(error)")
                        break
                    }
                    try? await Task.sleep(for: .milliseconds(50 << attempt))
                }
            }
        }
        draining = false
    }

    private func send(_ envelope: Containerd_Services_Events_Ttrpc_V1_Envelope) async throws {
        if client == nil {
            client = try await TTRPCClient.connect(unixSocket: address.hasPrefix("unix://") ? String(address.dropFirst(7)) : address)
        }
        guard let client else { return }
        var request = Containerd_Services_Events_Ttrpc_V1_ForwardRequest()
        request.envelope = envelope
        var metadata = TTRPCMetadata()
        metadata.append(namespace, for: "containerd-namespace-ttrpc")
        let _: Google_Protobuf_Empty = try await client.unary(
            service: "containerd.services.events.ttrpc.v1.Events", method: "Forward", request: request,
            options: TTRPCCallOptions(timeout: .seconds(5), metadata: metadata))
    }
}
