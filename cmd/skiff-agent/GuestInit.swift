import CSkiffSys
import Glibc
import GuestAgent

/// What PID 1 must do before anything else: the filesystems a Linux userland expects.
enum GuestInit {
    static func mountFilesystems() {
        let mounts: [(source: String, target: String, type: String, flags: Int, data: String?)] = [
            ("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nil),
            ("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nil),
            ("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755"),
            ("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"),
            ("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"),
            ("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, nil),
            ("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"),
            ("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"),
        ]
        for m in mounts {
            mkdir(m.target, 0o755)
            if isMountPoint(m.target) { continue }
            if mount(m.source, m.target, m.type, UInt(m.flags), m.data) != 0, errno != EBUSY {
                log("mount \(m.target): \(String(cString: strerror(errno)))")
            }
        }
        // The VM's loopback: the pod's containers share the VM's network namespace (where its
        // NICs are), and talk to each other on localhost.
        let lo = skiff_set_link_up("lo")
        if lo != 0 { log("loopback up: \(String(cString: strerror(-lo)))") }
        // Hand the cgroup controllers down, so containers' cgroups can be limited and measured.
        let controllers = "+cpu +memory +pids +io"
        let fd = open("/sys/fs/cgroup/cgroup.subtree_control", O_WRONLY | O_CLOEXEC)
        if fd >= 0 {
            _ = controllers.withCString { write(fd, $0, strlen($0)) }
            close(fd)
        }
        // /dev/ptmx must be the devpts instance's multiplexer.
        unlink("/dev/ptmx")
        symlink("pts/ptmx", "/dev/ptmx")
        symlink("/proc/self/fd", "/dev/fd")
        setenv("PATH", ProcessSpawner.defaultPath, 1)
        setenv("HOME", "/root", 1)
    }

    /// Replaces the executable at `path` with a sealed in-memory copy: a memfd that nothing can
    /// write, grow or shrink, which PID 1 keeps open and `path` becomes a link to. crun takes
    /// such a binary as already safe from a container overwriting it (CVE-2019-5736). Found
    /// on the initramfs instead, whose files are sealable but not sealed, it executes itself
    /// twice more, through a read-only bind mount and then through a sealed copy of its own,
    /// loading its ten libraries anew each time. (A bind mount of the memfd over `path` would
    /// be neater, but the kernel refuses to bind from memfd's internal mount.)
    static func sealExecutable(_ path: String) {
        let fd = skiff_sealed_copy(path)
        guard fd >= 0 else {
            log("sealing \(path): \(String(cString: strerror(-fd)))")
            return
        }
        let staging = path + ".sealed"
        unlink(staging)
        guard symlink("/proc/\(getpid())/fd/\(fd)", staging) == 0, rename(staging, path) == 0 else {
            log("sealing \(path): \(String(cString: strerror(errno)))")
            unlink(staging)
            close(fd)
            return
        }
    }

    /// Whether something is mounted on `path` (it sits on another device than its parent).
    static func isMountPoint(_ path: String) -> Bool {
        var own = stat(), parent = stat()
        guard stat(path, &own) == 0, stat(path + "/..", &parent) == 0 else { return false }
        return own.st_dev != parent.st_dev
    }

    /// Finds the device node of the virtio-serial port called `name`, waiting for it to appear.
    static func findPort(named name: String, timeout: Duration = .seconds(10)) -> String? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let dir = opendir("/sys/class/virtio-ports") {
                defer { closedir(dir) }
                while let entry = readdir(dir) {
                    let port = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
                    guard port.hasPrefix("vport") else { continue }
                    let portName = readLine(path: "/sys/class/virtio-ports/\(port)/name")
                    if portName == name, access("/dev/\(port)", F_OK) == 0 { return "/dev/\(port)" }
                }
            }
            usleep(2_000)
        }
        return nil
    }

    private static func readLine(path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].prefix(while: { $0 != 0x0a }), as: UTF8.self)
    }
}

/// Logs to the console (stderr), which the host captures into the VM's console log.
func log(_ message: String) {
    var now = timespec()
    clock_gettime(CLOCK_BOOTTIME, &now)
    let uptime = "\(now.tv_sec).\(String(now.tv_nsec / 1_000_000 + 1000).dropFirst())"
    let line = "skiff-agent [\(uptime)]: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}
