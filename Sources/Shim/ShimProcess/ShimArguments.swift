import SkiffSupport

/// The command line containerd gives a shim, in Go's flag syntax (`-name value`, `-flag`):
/// `-namespace NS -address ADDR -publish-binary BIN -id ID [-bundle B] [-debug] [-v] [start|delete]`.
public struct ShimArguments: Sendable, Equatable {
    public enum Action: String, Sendable { case serve, start, delete }

    public var namespace = ""
    public var address = ""
    public var publishBinary = ""
    public var id = ""
    public var bundle = ""
    public var debug = false
    public var version = false
    public var action: Action = .serve

    public init() {}

    /// Parses `arguments` (without the program name). Unknown flags are an error, as in Go.
    public init(parsing arguments: [String]) throws(SkiffError) {
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            guard argument.hasPrefix("-") else {
                guard let action = Action(rawValue: argument), action != .serve else {
                    throw .invalidArgument("unknown action \(argument.debugDescription)")
                }
                self.action = action
                continue
            }
            var name = String(argument.drop(while: { $0 == "-" }))
            var inlineValue: String?
            if let equals = name.firstIndex(of: "=") {
                inlineValue = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            func value() throws(SkiffError) -> String {
                if let inlineValue { return inlineValue }
                guard let next = rest.popFirst() else { throw .invalidArgument("flag -\(name) needs a value") }
                return next
            }
            switch name {
            case "namespace": namespace = try value()
            case "address": address = try value()
            case "publish-binary": publishBinary = try value()
            case "id": id = try value()
            case "bundle": bundle = try value()
            case "debug": debug = inlineValue.map { $0 != "false" } ?? true
            case "v": version = true
            default: throw .invalidArgument("unknown flag -\(name)")
            }
        }
    }
}
