import Foundation
import Glibc
import Testing

/// What Skiff made for one private containerd and has not yet removed, told apart from
/// anything else on the machine (other suites' pods, a user's): the containerd's files are
/// under `dir`, and its shims keep their pods under `dir/skiff` (SKIFF_STATE_ROOT, which
/// scripts/containerd-private sets), so each QEMU, shim, mount and VM state directory of
/// theirs names `dir`.
struct SkiffCensus: Equatable, CustomStringConvertible {
    /// QEMU processes of Skiff's pods whose command line names `dir` (their pid file is there).
    var qemus: [Int32] = []
    /// Shims serving the containerd at `dir` (their `-address` is in it).
    var shims: [Int32] = []
    /// Mount points under `dir/skiff`.
    var mounts: [String] = []
    /// VM state directories (`pod-*`) under `dir/skiff`.
    var vmDirectories: [String] = []
    /// Shim sockets under /run/containerd/s that this containerd's shims listened on (each
    /// shim logs its socket to containerd's log) and that are still there.
    var sockets: [String] = []
    /// Loop devices whose backing file is under `dir`.
    var loopDevices: [String] = []

    var isEmpty: Bool {
        qemus.isEmpty && shims.isEmpty && mounts.isEmpty && vmDirectories.isEmpty && sockets.isEmpty && loopDevices.isEmpty
    }
    var description: String {
        "QEMU \(qemus), shims \(shims), mounts \(mounts), VM state \(vmDirectories), sockets \(sockets), loop devices \(loopDevices)"
    }

    /// Takes the census of what Skiff made for the containerd under `dir`.
    static func of(_ dir: String) -> SkiffCensus {
        var census = SkiffCensus()
        census.qemus = skiffQEMUs(of: dir)
        census.shims = skiffShims(of: dir)
        let root = dir + "/skiff/"
        let mounts = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
        census.mounts = mounts.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            return fields.count > 1 && fields[1].hasPrefix(root) ? String(fields[1]) : nil
        }
        census.vmDirectories = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).filter { $0.hasPrefix("pod-") }
        census.sockets = shimSockets(loggedIn: dir + "/containerd.log").filter { FileManager.default.fileExists(atPath: $0) }
        census.loopDevices = loopDevices(backedUnder: dir)
        return census
    }

    /// The sockets the shims of the containerd logging to `log` said they serve on.
    static func shimSockets(loggedIn log: String) -> [String] {
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        var sockets: Set<String> = []
        for line in text.split(separator: "\n") where line.contains("serving ") {
            guard let range = line.range(of: " on /run/containerd/s/") else { continue }
            let path = line[line.index(range.lowerBound, offsetBy: 4)...].prefix { !$0.isWhitespace && $0 != "\"" }
            sockets.insert(String(path))
        }
        return sockets.sorted()
    }

    /// Loop devices (/sys/block/loopN/loop/backing_file) backed by a file under `dir`.
    static func loopDevices(backedUnder dir: String) -> [String] {
        let devices = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/block")) ?? []
        return devices.filter { $0.hasPrefix("loop") }.filter { device in
            let backing = (try? String(contentsOfFile: "/sys/block/\(device)/loop/backing_file", encoding: .utf8)) ?? ""
            return backing.hasPrefix(dir + "/")
        }.sorted()
    }
}

/// The arguments of process `pid`, or nil when it is gone.
func processArguments(_ pid: Int32) -> [String]? {
    guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
    return data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
}

private func processes(where matches: ([String]) -> Bool) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap(Int32.init).filter { pid in processArguments(pid).map(matches) ?? false }
}

/// Pids of the QEMU processes Skiff started for the pods of the containerd under `dir`.
func skiffQEMUs(of dir: String) -> [Int32] {
    processes { args in
        guard let i = args.firstIndex(of: "-name"), i + 1 < args.count, args[i + 1].hasPrefix("skiff-pod-") else { return false }
        return args.contains { $0.hasPrefix(dir + "/") }
    }
}

/// Pids of the Skiff shims serving the containerd under `dir`.
func skiffShims(of dir: String) -> [Int32] {
    processes { args in
        guard let first = args.first, first.hasSuffix("containerd-shim-skiff-v2"),
              let i = args.firstIndex(of: "-address"), i + 1 < args.count else { return false }
        return args[i + 1].hasPrefix(dir + "/")
    }
}

/// Waits (5 s at most) for the census of `dir` to empty, then expects it empty.
func expectNoLeftovers(of dir: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    var census = SkiffCensus.of(dir)
    for _ in 0..<100 where !census.isEmpty {
        try await Task.sleep(for: .milliseconds(50))
        census = SkiffCensus.of(dir)
    }
    #expect(census.isEmpty, "left by Skiff: \(census)", sourceLocation: sourceLocation)
}

/// SIGKILLs the shim serving container (or sandbox) `id` of the containerd under `dir`; how
/// many it killed.
@discardableResult
func killShim(of dir: String, serving id: String) -> Int {
    let shims = skiffShims(of: dir).filter { pid in
        guard let args = processArguments(pid), let i = args.firstIndex(of: "-id"), i + 1 < args.count else { return false }
        return args[i + 1] == id
    }
    for pid in shims { kill(pid, SIGKILL) }
    return shims.count
}
