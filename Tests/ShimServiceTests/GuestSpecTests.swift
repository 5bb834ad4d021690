import Testing
@testable import ShimService

/// containerd's OCI spec as crun gets it inside the VM.
@Suite struct GuestSpecTests {
    private let criSpec: [String: Any] = [
        "process": ["terminal": true, "args": ["sh"], "apparmorProfile": "cri-containerd.apparmor.d", "selinuxLabel": "system_u:system_r:container_t:s0"],
        "root": ["path": "/run/containerd/x/rootfs", "readonly": true],
        "mounts": [
            ["destination": "/data", "type": "bind", "source": "/host/data", "options": ["rbind", "ro"]],
            ["destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro"]],
        ],
        "linux": [
            "mountLabel": "system_u:object_r:container_file_t:s0",
            "namespaces": [
                ["type": "pid"],
                ["type": "network", "path": "/var/run/netns/cni-1234"],
                ["type": "ipc", "path": "/proc/42/ns/ipc"],
                ["type": "uts", "path": "/proc/4242/ns/uts"],
            ],
        ],
    ]

    private func namespaces(_ spec: [String: Any]) -> [[String: Any]] {
        (spec["linux"] as? [String: Any])?["namespaces"] as? [[String: Any]] ?? []
    }

    @Test func namespacesOfThePodAreJoinedAndHostPathsGiveANewOne() {
        let (spec, dropped) = Pod.guestSpec(criSpec, mountSources: [:], podPids: [42])
        let byType = Dictionary(namespaces(spec).map { ($0["type"] as? String ?? "", $0["path"] as? String) }, uniquingKeysWith: { a, _ in a })
        #expect(byType["ipc"] == .some("/proc/42/ns/ipc"), "a pod container's namespace is joined")
        #expect(byType["network"] == .some(nil), "the host's CNI namespace is not in the VM")
        #expect(byType["uts"] == .some(nil), "pid 4242 is no container of this pod")
        #expect(byType["pid"] == .some(nil))
        #expect(byType["cgroup"] == .some(nil), "a cgroup namespace, as on a cgroup v2 host")
        #expect(dropped.contains { $0.contains("/var/run/netns/cni-1234") })
        #expect(dropped.contains { $0.contains("/proc/4242/ns/uts") })
    }

    @Test func hostSecurityLabelsAreLeftOutAndSaid() {
        let (spec, dropped) = Pod.guestSpec(criSpec, mountSources: [:], podPids: [])
        let process = spec["process"] as? [String: Any] ?? [:]
        #expect(process["apparmorProfile"] == nil && process["selinuxLabel"] == nil)
        #expect((spec["linux"] as? [String: Any])?["mountLabel"] == nil)
        #expect(dropped.contains { $0.contains("cri-containerd.apparmor.d") })
        #expect(dropped.contains { $0.hasPrefix("linux.mountLabel") })
    }

    @Test func terminalMountsAndRootAreTheGuests() {
        let (spec, _) = Pod.guestSpec(criSpec, mountSources: [0: "/run/skiff/mounts/3"], podPids: [])
        #expect((spec["process"] as? [String: Any])?["terminal"] as? Bool == false, "the agent provides the terminal")
        let mounts = spec["mounts"] as? [[String: Any]] ?? []
        #expect(mounts.first?["source"] as? String == "/run/skiff/mounts/3")
        #expect(mounts.last?["type"] as? String == "cgroup2" && mounts.last?["source"] as? String == "cgroup2")
        let root = spec["root"] as? [String: Any] ?? [:]
        #expect(root["path"] as? String == "rootfs" && root["readonly"] as? Bool == true)
    }

    @Test func onlyProcNamespacePathsNameAPid() {
        #expect(Pod.procNamespacePid("/proc/42/ns/net") == 42)
        #expect(Pod.procNamespacePid("/proc/self/ns/net") == nil)
        #expect(Pod.procNamespacePid("/var/run/netns/cni-1") == nil)
        #expect(Pod.procNamespacePid("/proc/42/ns/net/x") == nil)
    }
}
