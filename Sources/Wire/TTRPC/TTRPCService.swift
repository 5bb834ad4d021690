#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import FoundationEssentials
import Glibc
#endif
import SwiftProtobuf

/// One method of a ttrpc service: how to turn a request payload into a response payload.
public struct TTRPCMethod: Sendable {
    public typealias Body = @Sendable (_ request: Data, _ context: TTRPCServerContext) async throws -> Data

    public let name: String
    let body: Body

    /// A method working on raw payload bytes.
    public init(name: String, body: @escaping Body) {
        self.name = name
        self.body = body
    }

    /// A unary method with typed protobuf request and response. A request that does not decode
    /// is answered with InvalidArgument before the body runs.
    public static func unary<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ name: String,
        _ body: @escaping @Sendable (Request, TTRPCServerContext) async throws -> Response
    ) -> TTRPCMethod {
        TTRPCMethod(name: name) { payload, context in
            let request: Request
            do {
                request = try Request(serializedBytes: payload)
            } catch {
                throw TTRPCStatus(.invalidArgument, "\(context.service)/\(name): cannot decode \(Request.protoMessageName): \(error)")
            }
            return try await body(request, context).serializedData()
        }
    }
}

/// A service a `TTRPCServer` can serve. Generated service protocols conform to it; so can a
/// hand-written type.
public protocol TTRPCServiceProvider: Sendable {
    /// Fully qualified service name, e.g. `containerd.task.v2.Task`.
    var serviceName: String { get }
    var methods: [TTRPCMethod] { get }
}

/// The services a server answers for, looked up by service and method name.
public struct TTRPCServiceRegistry: Sendable {
    private var services: [String: [String: TTRPCMethod]] = [:]

    public init(_ providers: [any TTRPCServiceProvider] = []) {
        for provider in providers { register(provider) }
    }

    /// Adds (or replaces) a service.
    public mutating func register(_ provider: any TTRPCServiceProvider) {
        services[provider.serviceName] = Dictionary(
            provider.methods.map { ($0.name, $0) }, uniquingKeysWith: { _, last in last })
    }

    /// The method, or the Unimplemented status containerd's ttrpc answers with.
    func lookup(service: String, method: String) -> Result<TTRPCMethod, TTRPCStatus> {
        guard let methods = services[service] else {
            return .failure(TTRPCStatus(.unimplemented, "service \(service) not found"))
        }
        guard let found = methods[method] else {
            return .failure(TTRPCStatus(.unimplemented, "method \(method) not found in service \(service)"))
        }
        return .success(found)
    }
}
