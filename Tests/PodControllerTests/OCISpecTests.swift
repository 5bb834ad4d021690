import Foundation
@testable import PodController
import SkiffSupport
import Testing

/// The typed spec keeps every field it does not model, to the last digit, and the guest spec
/// changes only what GuestSpec.make says it changes.
@Suite struct OCISpecTests {
    /// A spec as containerd 1.6 writes it for `ctr run --memory-limit … --rlimit …`, with a
    /// hook and a seccomp profile added as the CRI plugin or a user would.
    static let containerdSpec = """
        {"ociVersion": "1.0.2-dev",
         "process": {"user": {"uid": 0, "gid": 0, "additionalGids": [0, 10]}, "args": ["sh", "-c", "echo $X"],
                     "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "X=1"], "cwd": "/",
                     "capabilities": {"bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": ["CAP_CHOWN"], "permitted": ["CAP_CHOWN"]},
                     "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 18446744073709551615, "soft": 1024}],
                     "noNewPrivileges": true, "oomScoreAdj": -998, "apparmorProfile": "cri-containerd.apparmor.d"},
         "root": {"path": "rootfs"},
         "hostname": "pod-a",
         "mounts": [{"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
                    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}],
         "hooks": {"createRuntime": [{"path": "/usr/bin/true", "args": ["true", "hook"], "timeout": 5}]},
         "annotations": {"io.kubernetes.cri.container-type": "container"},
         "linux": {"resources": {"devices": [{"allow": false, "access": "rwm"}], "memory": {"limit": 33554432, "swap": 33554432},
                                 "cpu": {"shares": 1024, "quota": 50000, "period": 100000}, "pids": {"limit": 100}},
                   "cgroupsPath": "/pods/a b",
                   "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}],
                   "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438, "uid": 0, "gid": 0}],
                   "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"],
                   "sysctl": {"net.ipv4.ip_unprivileged_port_start": "0"},
                   "seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "architectures": ["SCMP_ARCH_X86_64"],
                               "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 18446744073709551615, "op": "SCMP_CMP_LE"}]}]}}}
        """

    private func json(_ data: Data) throws -> JSONValue { try JSONDecoder().decode(JSONValue.self, from: data) }

    @Test func aSpecRoundTripsUnchangedIncludingFieldsSkiffDoesNotModel() throws {
        let original = Data(Self.containerdSpec.utf8)
        let spec = try JSONDecoder().decode(OCISpec.self, from: original)
        #expect(spec.linux?.cgroupsPath == "/pods/a b")
        #expect(spec.linux?.resources?.memory?.limit == 33_554_432 && spec.linux?.resources?.cpu?.period == 100_000)
        #expect(spec.linux?.devices?.first?.major == 10)
        let encoded = try JSONEncoder().encode(spec)
        #expect(try json(encoded) == json(original))
        #expect(String(decoding: encoded, as: UTF8.self).contains("18446744073709551615"), "no precision lost on 2^64 - 1")
    }

    @Test func theGuestSpecChangesOnlyWhatItMust() throws {
        let spec = try JSONDecoder().decode(OCISpec.self, from: Data(Self.containerdSpec.utf8))
        let (guest, _) = GuestSpec.make(spec, mountSources: [:], podPids: [])
        guard case var .object(before) = try json(Data(Self.containerdSpec.utf8)),
              case var .object(after) = try json(JSONEncoder().encode(guest)) else { Issue.record("not objects"); return }
        // What GuestSpec.make documents: the root, a cgroup namespace, no host AppArmor label.
        #expect(after["root"] == ["path": "rootfs", "readonly": false])
        #expect(after["process"]?["apparmorProfile"] == nil)
        #expect(after["linux"]?["namespaces"]?.arrayValue?.count == 6)
        for key in ["root"] { before[key] = nil; after[key] = nil }
        if case var .object(process) = before["process"] { process["apparmorProfile"] = nil; before["process"] = .object(process) }
        if case var .object(linux) = before["linux"], case var .object(guestLinux) = after["linux"] {
            linux["namespaces"] = nil
            guestLinux["namespaces"] = nil
            before["linux"] = .object(linux)
            after["linux"] = .object(guestLinux)
        }
        #expect(JSONValue.object(before) == JSONValue.object(after), "hooks, seccomp, rlimits, devices, resources reach crun as written")
    }

    @Test func anExecProcessSpecKeepsItsFields() throws {
        let process = #"{"args": ["sh"], "env": ["A=1"], "cwd": "/", "terminal": true, "user": {"uid": 1000, "gid": 1000}, "capabilities": {"bounding": []}}"#
        let decoded = try JSONDecoder().decode(OCISpec.Process.self, from: Data(process.utf8))
        #expect(try json(JSONEncoder().encode(decoded)) == json(Data(process.utf8)))
    }
}
