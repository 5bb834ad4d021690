import SkiffSupport

/// An OCI runtime spec (config.json, opencontainers/runtime-spec `config.md` and
/// `config-linux.md`), typed where Skiff reads or changes it: the process, the root, the
/// mounts, and of `linux` the namespaces, the cgroups path, the devices and the resources.
/// Every other field, at any level, is kept in `extra` as it came and written back unchanged,
/// so what Skiff does not touch (hooks, seccomp, rlimits, capabilities, sysctls…) reaches crun
/// exactly as containerd wrote it, integers to the last digit.
struct OCISpec: Sendable, Equatable {
    var process: Process?
    var root: Root?
    var mounts: [Mount]?
    var linux: Linux?
    var annotations: [String: String]?
    var extra: [String: JSONValue] = [:]

    struct Process: Sendable, Equatable {
        var terminal: Bool?
        var args: [String]?
        var apparmorProfile: String?
        var selinuxLabel: String?
        var extra: [String: JSONValue] = [:]
    }

    struct Root: Sendable, Equatable {
        var path: String?
        var readonly: Bool?
        var extra: [String: JSONValue] = [:]
    }

    struct Mount: Sendable, Equatable {
        var destination: String?
        var type: String?
        var source: String?
        var options: [String]?
        var extra: [String: JSONValue] = [:]
    }

    struct Linux: Sendable, Equatable {
        var namespaces: [Namespace]?
        var cgroupsPath: String?
        var devices: [Device]?
        var resources: Resources?
        var mountLabel: String?
        var extra: [String: JSONValue] = [:]
    }

    struct Namespace: Sendable, Equatable {
        var type: String?
        var path: String?
        var extra: [String: JSONValue] = [:]
    }

    /// A device node the container gets (`linux.devices`): type `c`, `b`, `u` or `p`.
    struct Device: Sendable, Equatable {
        var path: String?
        var type: String?
        var major: Int64?
        var minor: Int64?
        var extra: [String: JSONValue] = [:]
    }

    /// `linux.resources`, typed for what Update applies and the device rules a device given to
    /// the container in the VM changes; the rest (blockIO…) kept.
    struct Resources: Sendable, Equatable {
        var memory: Limit?
        var cpu: CPU?
        var pids: Limit?
        var devices: [DeviceRule]?
        var extra: [String: JSONValue] = [:]

        /// A device cgroup rule (`allow`, `type` a/b/c, `major`/`minor` absent for any, `access` rwm).
        struct DeviceRule: Sendable, Equatable {
            var type: String?
            var major: Int64?
            var minor: Int64?
            var extra: [String: JSONValue] = [:]
        }

        /// `memory` and `pids`: a `limit` (bytes, or a count).
        struct Limit: Sendable, Equatable {
            var limit: Int64?
            var extra: [String: JSONValue] = [:]
        }

        /// `cpu`: CFS `quota` and `period` in microseconds.
        struct CPU: Sendable, Equatable {
            var quota: Int64?
            var period: UInt64?
            var extra: [String: JSONValue] = [:]
        }
    }
}

// MARK: Coding: the known keys typed, every other key kept

/// Any key of a JSON object.
struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ string: String) { stringValue = string }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// A JSON object whose known keys are typed properties and whose other keys go to `extra`.
protocol OpenObject: Codable {
    static var knownKeys: [String] { get }
    var extra: [String: JSONValue] { get set }
    init()
    mutating func decodeKnown(_ container: KeyedDecodingContainer<AnyKey>) throws
    func encodeKnown(_ container: inout KeyedEncodingContainer<AnyKey>) throws
}

extension OpenObject {
    init(from decoder: any Decoder) throws {
        self.init()
        let container = try decoder.container(keyedBy: AnyKey.self)
        try decodeKnown(container)
        let known = Set(Self.knownKeys)
        for key in container.allKeys where !known.contains(key.stringValue) {
            extra[key.stringValue] = try container.decode(JSONValue.self, forKey: key)
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: AnyKey.self)
        for (key, value) in extra { try container.encode(value, forKey: AnyKey(key)) }
        try encodeKnown(&container)
    }
}

extension KeyedDecodingContainer where K == AnyKey {
    func value<T: Decodable>(_ key: String) throws -> T? { try decodeIfPresent(T.self, forKey: AnyKey(key)) }
}

extension KeyedEncodingContainer where K == AnyKey {
    mutating func put<T: Encodable>(_ value: T?, _ key: String) throws { try encodeIfPresent(value, forKey: AnyKey(key)) }
}

extension OCISpec: OpenObject {
    static let knownKeys = ["process", "root", "mounts", "linux", "annotations"]
    mutating func decodeKnown(_ c: KeyedDecodingContainer<AnyKey>) throws {
        process = try c.value("process"); root = try c.value("root"); mounts = try c.value("mounts")
        linux = try c.value("linux"); annotations = try c.value("annotations")
    }
    func encodeKnown(_ c: inout KeyedEncodingContainer<AnyKey>) throws {
        try c.put(process, "process"); try c.put(root, "root"); try c.put(mounts, "mounts")
        try c.put(linux, "linux"); try c.put(annotations, "annotations")
    }
}

extension OCISpec.Process: OpenObject {
    static let knownKeys = ["terminal", "args", "apparmorProfile", "selinuxLabel"]
    mutating func decodeKnown(_ c: KeyedDecodingContainer<AnyKey>) throws {
        terminal = try c.value("terminal"); args = try c.value("args")
        apparmorProfile = try c.value("apparmorProfile"); selinuxLabel = try c.value("selinuxLabel")
    }
    func encodeKnown(_ c: inout KeyedEncodingContainer<AnyKey>) throws {
        try c.put(terminal, "terminal"); try c.put(args, "args")
        try c.put(apparmorProfile, "apparmorProfile"); try c.put(selinuxLabel, "selinuxLabel")
    }
}

extension OCISpec.Root: OpenObject {
    static let knownKeys = ["path", "readonly"]
    mutating func decodeKnown(_ c: KeyedDecodingContainer<AnyKey>) throws { path = try c.value("path"); readonly = try c.value("readonly") }
    func encodeKnown(_ c: inout KeyedEncodingContainer<AnyKey>) throws { try c.put(path, "path"); try c.put(readonly, "readonly") }
}

extension OCISpec.Mount: OpenObject {
    static let knownKeys = ["destination", "type", "source", "options"]
    mutating func decodeKnown(_ c: KeyedDecodingContainer<AnyKey>) throws {
        destination = try c.value("destination"); type = try c.value("type"); source = try c.value("source"); options = try c.value("options")
    }
    func encodeKnown(_ c: inout KeyedEncodingContainer<AnyKey>) throws {
        try c.put(destination, "destination"); try c.put(type, "type"); try c.put(source, "source"); try c.put(options, "options")
    }
}

extension OCISpec.Linux: OpenObject {
    static let knownKeys = ["namespaces", "cgroupsPath", "devices", "resources", "mountLabel"]
    mutating func decodeKnown(_ c: KeyedDecodingContainer<AnyKey>) throws {
        namespaces = try c.value("namespaces"); cgroupsPath = try c.value("cgroupsPath"); devices = try c.value("devices")
        resources = try c.value("resources"); mountLabel = try c.value("mountLabel")
    }
    func encodeKnown(_ c: inout KeyedEncodingContainer<AnyKey>) throws {
        try c.put(namespaces, "namespaces"); try c.put(cgroupsPath, "cgroupsPath"); try c.put(devices, "devices")
        try c.put(resources, "resources"); try c.put(mountLabel, "mountLabel")
    }
}

extension OCISpec.Namespace: OpenObject {
    static let knownKeys = ["type", "path"]
    mutating func decodeKnown(_ c: KeyedDecodingContainer<AnyKey>) throws { type = try c.value("type"); path = try c.value("path") }
    func encodeKnown(_ c: inout KeyedEncodingContainer<AnyKey>) throws { try c.put(type, "type"); try c.put(path, "path") }
}

extension OCISpec.Device: OpenObject {
    static let knownKeys = ["path", "type", "major", "minor"]
    mutating func decodeKnown(_ c: KeyedDecodingContainer<AnyKey>) throws {
        path = try c.value("path"); type = try c.value("type"); major = try c.value("major"); minor = try c.value("minor")
    }
    func encodeKnown(_ c: inout KeyedEncodingContainer<AnyKey>) throws {
        try c.put(path, "path"); try c.put(type, "type"); try c.put(major, "major"); try c.put(minor, "minor")
    }
}

extension OCISpec.Resources: OpenObject {
    static let knownKeys = ["memory", "cpu", "pids", "devices"]
    mutating func decodeKnown(_ c: KeyedDecodingContainer<AnyKey>) throws {
        memory = try c.value("memory"); cpu = try c.value("cpu"); pids = try c.value("pids"); devices = try c.value("devices")
    }
    func encodeKnown(_ c: inout KeyedEncodingContainer<AnyKey>) throws {
        try c.put(memory, "memory"); try c.put(cpu, "cpu"); try c.put(pids, "pids"); try c.put(devices, "devices")
    }
}

extension OCISpec.Resources.DeviceRule: OpenObject {
    static let knownKeys = ["type", "major", "minor"]
    mutating func decodeKnown(_ c: KeyedDecodingContainer<AnyKey>) throws { type = try c.value("type"); major = try c.value("major"); minor = try c.value("minor") }
    func encodeKnown(_ c: inout KeyedEncodingContainer<AnyKey>) throws { try c.put(type, "type"); try c.put(major, "major"); try c.put(minor, "minor") }
}

extension OCISpec.Resources.Limit: OpenObject {
    static let knownKeys = ["limit"]
    mutating func decodeKnown(_ c: KeyedDecodingContainer<AnyKey>) throws { limit = try c.value("limit") }
    func encodeKnown(_ c: inout KeyedEncodingContainer<AnyKey>) throws { try c.put(limit, "limit") }
}

extension OCISpec.Resources.CPU: OpenObject {
    static let knownKeys = ["quota", "period"]
    mutating func decodeKnown(_ c: KeyedDecodingContainer<AnyKey>) throws { quota = try c.value("quota"); period = try c.value("period") }
    func encodeKnown(_ c: inout KeyedEncodingContainer<AnyKey>) throws { try c.put(quota, "quota"); try c.put(period, "period") }
}
