import Foundation
import Glibc
import Testing

extension ContainerdE2E {
    /// What a container in a Skiff VM cannot reach: the agent's channel to the host, and the
    /// processes and files of the pod's other containers beyond what the pod shares.
    @Suite(.timeLimit(.minutes(4))) struct IsolationTests {
        static let image = "docker.io/library/skiff-test:latest"
        static let runtime = "--runtime io.containerd.skiff.v2"

        @Test func aContainerCannotReachTheAgentsPortsEvenAsRoot() async throws {
            try await withContainerd { cd in
                // The guest has the ports (the agent uses them); the container sees no node of
                // them, and one it makes with their numbers does not open (its device cgroup
                // allows no virtio-ports major).
                let run = try await cd.ctr("""
                    run --rm \(Self.runtime) \(Self.image) iso1 sh -c 'ls /dev | grep -c vport; \
                    m=$(cut -d: -f1 /sys/class/virtio-ports/vport*p1/dev 2>/dev/null | head -1); echo major=${m:-none}; \
                    mknod /tmp/p c ${m:-250} 1 2>/dev/null; cat /tmp/p 2>&1 | grep -c -i -e "not permitted" -e "no such"'
                    """)
                let lines = run.output.split(separator: "\n").map(String.init)
                #expect(lines.first == "0", "a vport node in the container's /dev: \(run.output)")
                #expect(lines.count == 3 && lines[1] != "major=none" && lines[2] == "1",
                        "the container could make or open a node of the agent's port: \(run.output)")
            }
        }

        @Test func aPodsContainersSeeNeitherEachOthersProcessesNorFiles() async throws {
            try await withContainerd { cd in
                let pod = "--annotation io.kubernetes.cri.sandbox-id=isopod"
                #expect(try await cd.ctr("run -d \(pod) \(Self.runtime) \(Self.image) iso-a sh -c 'echo secret > /tmp/a-only; exec sleep 600'").status == 0)
                #expect(try await cd.ctr("run -d \(pod) \(Self.runtime) \(Self.image) iso-b sleep 600").status == 0)
                // iso-b: its own pid namespace (no sleep of iso-a's), its own root (no /tmp/a-only),
                // and nothing of the guest's own tree (the agent's state, other roots).
                let look = try await cd.ctr("""
                    task exec --exec-id look iso-b sh -c 'ps -o comm | grep -c sleep; ls /tmp/a-only 2>&1 | grep -c "No such"; \
                    ls /run/skiff 2>&1 | grep -c "No such"; cat /proc/1/cmdline | tr "\\0" " "'
                    """)
                let lines = look.output.split(separator: "\n").map(String.init)
                #expect(lines == ["1", "1", "1", "sleep 600 "], "\(look.output)")
                for id in ["iso-a", "iso-b"] {
                    try await killAndDelete(cd, id)
                }
            }
        }
    }
}
