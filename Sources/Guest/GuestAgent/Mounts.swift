import Glibc

/// mount(2) and umount2(2) with mount(8)-style options.
enum Mounts {
    private static let flagNames: [String: UInt] = [
        "ro": UInt(MS_RDONLY), "nosuid": UInt(MS_NOSUID), "nodev": UInt(MS_NODEV), "noexec": UInt(MS_NOEXEC),
        "bind": UInt(MS_BIND), "rbind": UInt(MS_BIND | MS_REC), "relatime": UInt(MS_RELATIME),
        "noatime": UInt(MS_NOATIME), "sync": UInt(MS_SYNCHRONOUS),
    ]

    static func mount(source: String, target: String, fstype: String, options: [String]) throws(AgentError) {
        guard target.hasPrefix("/"), !target.split(separator: "/").contains("..") else {
            throw .invalidArgument("mount target \(target) must be an absolute path without '..'")
        }
        var flags: UInt = 0
        var data: [String] = []
        for option in options {
            if option == "rw" { continue }
            if let flag = flagNames[option] { flags |= flag } else { data.append(option) }
        }
        // A bind mount of a file needs a file to land on; anything else, a directory.
        var sourceInfo = stat()
        if flags & UInt(MS_BIND) != 0, stat(source, &sourceInfo) == 0, sourceInfo.st_mode & S_IFMT != S_IFDIR {
            let parent = String(target[..<(target.lastIndex(of: "/") ?? target.startIndex)])
            if !parent.isEmpty { try makeDirectories(parent) }
            let fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw .errno("create \(target)") }
            close(fd)
        } else {
            try makeDirectories(target)
        }
        let joined = data.joined(separator: ",")
        guard Glibc.mount(source, target, fstype.isEmpty ? nil : fstype, flags, joined.isEmpty ? nil : joined) == 0 else {
            throw .errno("mount \(source) on \(target)")
        }
        // A read-only bind mount needs a remount to take the flag.
        if flags & UInt(MS_BIND) != 0, flags & UInt(MS_RDONLY) != 0 {
            guard Glibc.mount("", target, nil, UInt(MS_REMOUNT | MS_BIND | MS_RDONLY), nil) == 0 else {
                let code = errno
                _ = umount2(target, Int32(MNT_DETACH))
                throw .system("remount \(target) read-only", code)
            }
        }
    }

    static func unmount(target: String, detach: Bool, remove: Bool) throws(AgentError) {
        guard umount2(target, detach ? Int32(MNT_DETACH) : 0) == 0 else { throw .errno("unmount \(target)") }
        if remove, rmdir(target) != 0, errno == ENOTDIR { _ = unlink(target) }
    }

    static func makeDirectories(_ path: String) throws(AgentError) {
        var current = ""
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o755) != 0, errno != EEXIST { throw .errno("mkdir \(current)") }
        }
    }
}
