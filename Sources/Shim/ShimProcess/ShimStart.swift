import PodController
import SkiffSupport
import FoundationEssentials
import Glibc

/// `containerd-shim-skiff-v2 ... start`: find or start the pod's shim and print its address.
///
/// The socket is the one containerd derives for the container's group. If a shim already
/// answers on it, that shim serves this container too. Otherwise this invocation binds the
/// socket, starts the serving shim (itself without `start`) with the listening socket as
/// descriptor 3 in a session of its own, and leaves. Either way the bundle gets its
/// `address` file and stdout gets the address, and nothing else.
public enum ShimStart {
    public static func run(_ arguments: ShimArguments, bundle: TaskBundle, executable: String,
                           socketDirectory: String = ShimSocket.directory) throws(SkiffError) -> String {
        guard !arguments.id.isEmpty, !arguments.namespace.isEmpty, !arguments.address.isEmpty else {
            throw .invalidArgument("start needs -id, -namespace and -address")
        }
        let group = ShimSocket.group(id: arguments.id, annotations: try bundle.annotations())
        let address = ShimSocket.address(containerdAddress: arguments.address, namespace: arguments.namespace,
                                         group: group, directory: socketDirectory)
        let path = ShimSocket.socketPath(of: address)
        mkdir(socketDirectory, 0o711)
        // Two containers of one pod may start at once: whoever takes the socket directory's
        // lock first binds the socket, and the other then finds it answering (a listening
        // socket accepts connections into its backlog before the server serves).
        let lock = open(socketDirectory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if lock >= 0 { while flock(lock, LOCK_EX) != 0, errno == EINTR {} }
        defer { if lock >= 0 { close(lock) } }
        if answers(path) {
            try bundle.write(address, to: bundle.addressFile)
            return address
        }
        unlink(path)
        let listener = try listen(path)
        defer { close(listener) }
        var serveArguments = ["-namespace", arguments.namespace, "-id", arguments.id, "-address", arguments.address]
        if !arguments.publishBinary.isEmpty { serveArguments += ["-publish-binary", arguments.publishBinary] }
        if arguments.debug { serveArguments.append("-debug") }
        do {
            try spawnServer(executable: executable, arguments: serveArguments, listener: listener)
        } catch {
            unlink(path)
            throw error
        }
        try bundle.write(address, to: bundle.addressFile)
        return address
    }

    /// Whether a shim is listening on `path`.
    static func answers(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = unixAddress(path)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        } == 0
    }

    static func listen(_ path: String) throws(SkiffError) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .internalError("socket: \(String(cString: strerror(errno)))") }
        var address = unixAddress(path)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, chmod(path, 0o600) == 0, Glibc.listen(fd, 256) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw .internalError("listen on \(path): \(message)")
        }
        return fd
    }

    static func unixAddress(_ path: String) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() where i < raw.count - 1 { raw[i] = byte }
        }
        return address
    }

    static func spawnServer(executable: String, arguments: [String], listener: Int32) throws(SkiffError) {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, listener, 3)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(0x80 /* POSIX_SPAWN_SETSID */))
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard rc == 0 else { throw .internalError("start the serving shim: \(String(cString: strerror(rc)))") }
    }
}
