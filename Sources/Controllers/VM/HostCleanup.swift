import FoundationEssentials
import Glibc

/// Undoes everything a handles file lists: kills the VM's QEMU if it still runs (after
/// checking by name that the pid is ours), unmounts host bind mounts, removes files, sockets
/// and directories, and finally the handles file. Safe to run again; every step carries on
/// past failures, which are returned.
public enum HostCleanup {
    @discardableResult
    public static func run(handlesFile path: String, killTimeout: Duration = .seconds(5)) async -> [String] {
        guard let handles = try? HandlesFile.read(from: path) else {
            return access(path, F_OK) == 0 ? ["unreadable handles file \(path)"] : []
        }
        return await run(handles, handlesFile: path, killTimeout: killTimeout)
    }

    /// Undoes `handles`. The handles file, when given, is removed once everything before the
    /// directories succeeded (it usually lives in the state directory removed last).
    public static func run(_ handles: VMHandles, handlesFile: String? = nil, killTimeout: Duration = .seconds(5)) async -> [String] {
        var failures: [String] = []
        if let failure = await killProcess(handles, timeout: killTimeout) { failures.append(failure) }
        for mirror in handles.mirrors ?? [] {
            do { try await NetnsCommand.removeIngress(netns: mirror.netns, device: mirror.device) } catch { failures.append("\(error)") }
        }
        for mount in handles.hostMounts.reversed() {
            if umount2(mount, Int32(MNT_DETACH)) != 0, errno != EINVAL, errno != ENOENT {
                failures.append("unmount \(mount): \(String(cString: strerror(errno)))")
                continue
            }
            if remove(mount) != 0, errno != ENOENT, errno != ENOTEMPTY {
                failures.append("remove \(mount): \(String(cString: strerror(errno)))")
            }
        }
        for file in handles.files where unlink(file) != 0 && errno != ENOENT {
            failures.append("remove \(file): \(String(cString: strerror(errno)))")
        }
        if let handlesFile, failures.isEmpty, unlink(handlesFile) != 0, errno != ENOENT {
            failures.append("remove \(handlesFile): \(String(cString: strerror(errno)))")
        }
        for directory in handles.directories.reversed() where rmdir(directory) != 0 && errno != ENOENT {
            failures.append("remove \(directory): \(String(cString: strerror(errno)))")
        }
        return failures
    }

    /// Kills the QEMU named in the pid file when it is still ours; nil when nothing is left running.
    static func killProcess(_ handles: VMHandles, timeout: Duration) async -> String? {
        guard let text = try? String(contentsOfFile: handles.pidFile, encoding: .utf8),
              let pid = pid_t(text.trimmed()), pid > 0
        else { return nil }
        guard isOurs(pid: pid, name: handles.processName) else { return nil }
        kill(pid, SIGKILL)
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if !isOurs(pid: pid, name: handles.processName) || isZombie(pid) { return nil }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return "QEMU \(pid) did not die"
    }

    /// Whether `pid` runs with `-name NAME` on its command line.
    static func isOurs(pid: pid_t, name: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        let args = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard let index = args.firstIndex(of: "-name"), index + 1 < args.count else { return false }
        return args[index + 1] == name || args[index + 1].hasPrefix(name + ",")
    }

    static func isZombie(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        return stat[stat.index(after: close)...].split(separator: " ").first == "Z"
    }
}
