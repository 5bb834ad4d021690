/// The key/value metadata carried by a ttrpc request (`Request.metadata`). A key may carry
/// several values; their order is kept, as containerd's `ttrpc.MD` does.
public struct TTRPCMetadata: Sendable, Hashable, ExpressibleByDictionaryLiteral, Sequence {
    /// The pairs in the order they travel on the wire.
    public private(set) var pairs: [(key: String, value: String)]

    public init() { pairs = [] }

    public init(dictionaryLiteral elements: (String, String)...) {
        pairs = elements.map { (key: $0.0, value: $0.1) }
    }

    /// All values of `key`, in order.
    public subscript(key: String) -> [String] {
        pairs.filter { $0.key == key }.map(\.value)
    }

    /// The first value of `key`, if any.
    public func first(_ key: String) -> String? {
        pairs.first { $0.key == key }?.value
    }

    /// Adds one more value for `key`.
    public mutating func append(_ value: String, for key: String) {
        pairs.append((key: key, value: value))
    }

    /// Replaces every value of `key` with `values`.
    public mutating func set(_ values: [String], for key: String) {
        pairs.removeAll { $0.key == key }
        pairs.append(contentsOf: values.map { (key: key, value: $0) })
    }

    public var isEmpty: Bool { pairs.isEmpty }

    public func makeIterator() -> IndexingIterator<[(key: String, value: String)]> {
        pairs.makeIterator()
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.pairs.elementsEqual(rhs.pairs) { $0.key == $1.key && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for pair in pairs {
            hasher.combine(pair.key)
            hasher.combine(pair.value)
        }
    }

    init(wire: [Ttrpc_KeyValue]) {
        pairs = wire.map { (key: $0.key, value: $0.value) }
    }

    var wire: [Ttrpc_KeyValue] {
        pairs.map {
            var kv = Ttrpc_KeyValue()
            kv.key = $0.key
            kv.value = $0.value
            return kv
        }
    }
}
