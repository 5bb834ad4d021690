import Foundation
@testable import PodController
import SkiffSupport
import Testing

/// containerd's OCI spec as crun gets it inside the VM.
@Suite struct GuestSpecTests {
    private func spec(_ json: String) throws -> OCISpec {
        try JSONDecoder().decode(OCISpec.self, from: Data(json.utf8))
    }

    private var criSpec: OCISpec {
        get throws {
            try spec("""
                {"process": {"terminal": true, "args": ["sh"], "apparmorProfile": "cri-containerd.apparmor.d",
                             "selinuxLabel": "system_u:system_r:container_t:s0"},
                 "root": {"path": "/run/containerd/x/rootfs", "readonly": true},
                 "mounts": [{"destination": "/data", "type": "bind", "source": "/host/data", "options": ["rbind", "ro"]},
                            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro"]}],
                 "linux": {"mountLabel": "system_u:object_r:container_file_t:s0",
                           "namespaces": [{"type": "pid"}, {"type": "network", "path": "/var/run/netns/cni-1234"},
                                          {"type": "ipc", "path": "/proc/42/ns/ipc"}, {"type": "uts", "path": "/proc/4242/ns/uts"}]}}
                """)
        }
    }

    @Test func namespacesOfThePodAreJoinedAndHostPathsGiveANewOne() throws {
        let (guest, dropped) = GuestSpec.make(try criSpec, mountSources: [:], podPids: [42])
        let byType = Dictionary((guest.linux?.namespaces ?? []).map { ($0.type ?? "", $0.path) }, uniquingKeysWith: { a, _ in a })
        #expect(byType["ipc"] == .some("/proc/42/ns/ipc"), "a pod container's namespace is joined")
        #expect(byType["network"] == nil, "the pod's network is the VM's own namespace")
        #expect(byType["uts"] == .some(nil), "pid 4242 is no container of this pod")
        #expect(byType["pid"] == .some(nil))
        #expect(byType["cgroup"] == .some(nil), "a cgroup namespace, as on a cgroup v2 host")
        #expect(dropped.contains { $0.contains("/var/run/netns/cni-1234") })
        #expect(dropped.contains { $0.contains("/proc/4242/ns/uts") })
    }

    @Test func hostSecurityLabelsAreLeftOutAndSaid() throws {
        let (guest, dropped) = GuestSpec.make(try criSpec, mountSources: [:], podPids: [])
        #expect(guest.process?.apparmorProfile == nil && guest.process?.selinuxLabel == nil)
        #expect(guest.linux?.mountLabel == nil)
        #expect(dropped.contains { $0.contains("cri-containerd.apparmor.d") })
        #expect(dropped.contains { $0.hasPrefix("linux.mountLabel") })
    }

    @Test func theTerminalStaysAndMountsAndRootAreTheGuests() throws {
        let (guest, _) = GuestSpec.make(try criSpec, mountSources: [0: "/run/skiff/mounts/3"], podPids: [])
        #expect(guest.process?.terminal == true, "crun makes the terminal and hands it to the agent")
        #expect(guest.mounts?.first?.source == "/run/skiff/mounts/3")
        #expect(guest.mounts?.last?.type == "cgroup2" && guest.mounts?.last?.source == "cgroup2")
        #expect(guest.root?.path == "rootfs" && guest.root?.readonly == true)
    }

    @Test func onlyProcNamespacePathsNameAPid() {
        #expect(GuestSpec.procNamespacePid("/proc/42/ns/net") == 42)
        #expect(GuestSpec.procNamespacePid("/proc/self/ns/net") == nil)
        #expect(GuestSpec.procNamespacePid("/var/run/netns/cni-1") == nil)
        #expect(GuestSpec.procNamespacePid("/proc/42/ns/net/x") == nil)
    }

    @Test func bindSourcesMustExistAndBeAbsolute() throws {
        #expect(throws: SkiffError.self) { try GuestSpec.bindMounts(of: try spec(#"{"mounts": [{"destination": "/d", "type": "bind", "source": "rel"}]}"#)) }
        #expect(throws: SkiffError.self) { try GuestSpec.bindMounts(of: try spec(#"{"mounts": [{"destination": "/d", "type": "bind", "source": "/no/such"}]}"#)) }
        let binds = try GuestSpec.bindMounts(of: try spec(#"{"mounts": [{"destination": "/p", "type": "proc", "source": "proc"}, {"destination": "/d", "source": "/tmp", "options": ["rbind", "ro"]}]}"#))
        #expect(binds == [GuestSpec.BindMount(index: 1, source: "/tmp", readOnly: true)])
    }
}
