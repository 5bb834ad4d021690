import SkiffSupport

/// containerd's identifier rule (its pkg/identifiers): one or more letters and digits, then
/// any number of groups of one '.', '_' or '-' followed by letters and digits; at most 128
/// characters here (containerd's own API stops at 76). Task and exec ids become crun's
/// arguments and file names in the guest, so none may read as an option or a path.
public enum ContainerdIdentifier {
    /// The longest id accepted, in Unicode scalars.
    public static let maximumLength = 128

    /// Whether `id` follows the rule.
    public static func isValid(_ id: String) -> Bool {
        let scalars = Array(id.unicodeScalars)
        guard !scalars.isEmpty, scalars.count <= maximumLength else { return false }
        let alnum: (Unicode.Scalar) -> Bool = { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) }
        let separator: (Unicode.Scalar) -> Bool = { $0 == "." || $0 == "_" || $0 == "-" }
        guard alnum(scalars[0]), alnum(scalars[scalars.count - 1]) else { return false }
        for (index, scalar) in scalars.enumerated() {
            if separator(scalar) {
                if separator(scalars[index - 1]) { return false }
            } else if !alnum(scalar) {
                return false
            }
        }
        return true
    }

    /// Throws `.invalidArgument` naming `what` ("task id", "exec id") unless `id` follows the rule.
    public static func validate(_ id: String, what: String) throws(SkiffError) {
        guard isValid(id) else {
            throw .invalidArgument("invalid \(what) \(excerpt(id)): letters and digits, with one '-', '_' or '.' between them, at most \(maximumLength) characters")
        }
    }

    /// `id` quoted for a message or a log line: whole when short, else its first 64 characters
    /// and its length, so an oversized id cannot flood either.
    public static func excerpt(_ id: String) -> String {
        let count = id.unicodeScalars.count
        guard count > 64 else { return id.debugDescription }
        return String(String.UnicodeScalarView(id.unicodeScalars.prefix(64))).debugDescription + "… (\(count) characters)"
    }
}
