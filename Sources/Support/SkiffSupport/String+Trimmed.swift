extension StringProtocol {
    /// The text without leading and trailing whitespace (spaces, tabs, newlines): what
    /// Foundation's `trimmingCharacters(in: .whitespacesAndNewlines)` gives, without Foundation,
    /// which the shim does not load (its ICU data alone is megabytes of resident memory).
    public func trimmed() -> String {
        let isSpace: (Character) -> Bool = { $0.isWhitespace }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first...last])
    }
}
