import SkiffSupport

/// What an OCI spec must hold before any of it reaches the VM: the runtime spec's required
/// fields (config.md: an absolute `process.cwd`, a `root.path`, absolute mount destinations),
/// and bounds no container can need but a bad or hostile spec can use to exhaust the guest
/// (crun in a 256 MiB VM runs out of memory on 100,000 mounts). Each failure is an
/// InvalidArgument naming the field.
enum OCISpecChecks {
    /// Most mounts a spec may carry.
    static let maximumMounts = 4096
    /// Longest single argument or environment string, bytes: Linux's MAX_ARG_STRLEN (32 pages),
    /// past which execve fails with E2BIG.
    static let maximumArgumentBytes = 32 * 4096
    /// Most bytes of arguments and environment together (each string with its NUL): what
    /// execve takes under the default 8 MiB stack limit (a quarter of it).
    static let maximumArgumentsAndEnvironmentBytes = 2 << 20

    /// Checks `spec`; throws `.invalidArgument` at the first field that breaks a rule.
    static func check(_ spec: OCISpec) throws(SkiffError) {
        guard let process = spec.process else { throw .invalidArgument("the OCI spec has no process") }
        guard let args = process.args, !args.isEmpty else { throw .invalidArgument("the OCI spec has no process.args") }
        guard case let .string(cwd)? = process.extra["cwd"], cwd.hasPrefix("/") else {
            throw .invalidArgument("process.cwd must be an absolute path (OCI runtime spec, config.md)")
        }
        var environment: [String] = []
        if let env = process.extra["env"] {
            guard case let .array(values) = env else { throw .invalidArgument("process.env must be an array of strings") }
            for value in values {
                guard case let .string(text) = value else { throw .invalidArgument("process.env must be an array of strings") }
                environment.append(text)
            }
        }
        var total = 0
        for text in args + environment {
            let bytes = text.utf8.count + 1
            guard bytes <= maximumArgumentBytes else {
                throw .invalidArgument("an argument or environment string of \(bytes) bytes: at most \(maximumArgumentBytes) (Linux's MAX_ARG_STRLEN)")
            }
            total += bytes
        }
        guard total <= maximumArgumentsAndEnvironmentBytes else {
            throw .invalidArgument("process.args and process.env hold \(total) bytes: at most \(maximumArgumentsAndEnvironmentBytes), what execve takes")
        }
        guard let root = spec.root?.path, !root.isEmpty else { throw .invalidArgument("the OCI spec has no root.path") }
        let mounts = spec.mounts ?? []
        guard mounts.count <= maximumMounts else {
            throw .invalidArgument("the OCI spec has \(mounts.count) mounts: at most \(maximumMounts)")
        }
        for (index, mount) in mounts.enumerated() {
            guard let destination = mount.destination, destination.hasPrefix("/") else {
                throw .invalidArgument("mount \(index) needs an absolute destination")
            }
            guard !destination.split(separator: "/").contains("..") else {
                throw .invalidArgument("mount \(index) destination \(destination.debugDescription) has a '..' component")
            }
        }
        if let limit = spec.linux?.resources?.memory?.limit, limit < -1 {
            throw .invalidArgument("linux.resources.memory.limit \(limit): bytes, or -1 for no limit")
        }
    }
}
