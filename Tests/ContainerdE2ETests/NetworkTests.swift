import Foundation
import Glibc
import Testing

extension ContainerdE2E {
    /// A pod's network namespace on the host, as CNI leaves it (a veth with an address and a
    /// default route), joined to the pod's VM: the pod's IP answers from the other end of the
    /// veth, the pod's containers share it and localhost, and nothing is left afterwards.
    /// Each test makes its own two namespaces (the pod's, and a peer holding the veth's other
    /// end) and sends traffic only between them.
    @Suite(.timeLimit(.minutes(5))) struct NetworkTests {
        static let image = ContainerdE2E.CtrRunTests.image
        static let runtime = ContainerdE2E.CtrRunTests.runtime

        /// The two namespaces and the veth between them: pod side `eth0` 10.231.9.2/24 with a
        /// default route through the peer side, 10.231.9.1/24.
        struct PodNetwork {
            let pod: String
            let peer: String

            init() throws {
                let tag = "\(getpid() % 10000)\(Int.random(in: 0..<100))"
                pod = "skiff-pod\(tag)"
                peer = "skiff-peer\(tag)"
                _ = try PrivateContainerd.shell("""
                    set -e
                    ip netns add \(pod); ip netns add \(peer)
                    ip link add skv\(tag) type veth peer name skp\(tag)
                    ip link set skv\(tag) netns \(pod); ip link set skp\(tag) netns \(peer)
                    ip -n \(pod) link set skv\(tag) name eth0
                    ip -n \(pod) addr add 10.231.9.2/24 dev eth0; ip -n \(peer) addr add 10.231.9.1/24 dev skp\(tag)
                    ip -n \(pod) link set lo up; ip -n \(pod) link set eth0 up
                    ip -n \(peer) link set lo up; ip -n \(peer) link set skp\(tag) up
                    ip -n \(pod) route add default via 10.231.9.1
                    """)
            }

            var path: String { "/var/run/netns/\(pod)" }

            /// Runs `command` in the peer namespace; its status and output.
            func fromPeer(_ command: String) async -> (status: Int32, output: String) {
                let out = "/tmp/\(peer).out"
                defer { unlink(out) }
                let status = await PrivateContainerd.system("timeout 60 ip netns exec \(peer) \(command) >\(out) 2>&1 </dev/null")
                return ((status >> 8) & 0xff, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
            }

            /// What is left in the pod's namespace of Skiff's: taps and ingress qdiscs.
            func leftovers() -> String {
                let links = (try? PrivateContainerd.shell("ip -n \(pod) -o link")) ?? ""
                let qdiscs = (try? PrivateContainerd.shell("ip netns exec \(pod) tc qdisc show dev eth0")) ?? ""
                return links.split(separator: "\n").filter { $0.contains("skiff-tap") }.joined() +
                    qdiscs.split(separator: "\n").filter { $0.contains("ingress") }.joined()
            }

            func remove() {
                _ = try? PrivateContainerd.shell("ip netns del \(pod); ip netns del \(peer)")
            }
        }

        static let server = "sh -c 'mkdir -p /tmp/www && echo hello from the pod > /tmp/www/index.html && exec busybox httpd -f -p 8080 -h /tmp/www'"
        static let fetch = "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://10.231.9.2:8080/', timeout=20).read().decode(), end='')\""

        @Test func thePodsAddressIsTheVMsAndItsServerAnswersFromThePeer() async throws {
            let net = try PodNetwork()
            defer { net.remove() }
            try await withContainerd { cd async throws in
                let pod = "--annotation io.kubernetes.cri.sandbox-id=net1"
                let run = try await cd.ctr("run -d \(pod) --with-ns network:\(net.path) \(Self.runtime) \(Self.image) web \(Self.server)")
                #expect(run.status == 0, "\(run.output)")
                let addr = try await cd.ctr("task exec --exec-id a web ip -o addr")
                #expect(addr.output.contains("10.231.9.2/24"), "\(addr.output)")
                let route = try await cd.ctr("task exec --exec-id r web ip route")
                #expect(route.output.contains("default via 10.231.9.1"), "\(route.output)")
                var answer = await net.fromPeer(Self.fetch)
                for _ in 0..<20 where answer.status != 0 {
                    try await Task.sleep(for: .milliseconds(250))
                    answer = await net.fromPeer(Self.fetch)
                }
                #expect(answer.status == 0 && answer.output == "hello from the pod\n", "\(answer.output)")
                #expect(await net.fromPeer("ping -c 3 -W 5 10.231.9.2").status == 0)
                // A second container of the pod shares the address and reaches the first on localhost.
                let listed = try await cd.ctr("task ls").output
                let pid = listed.split(separator: "\n").first { $0.hasPrefix("web ") }?.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? ""
                let peer = try await cd.ctr("run --rm \(pod) --with-ns network:/proc/\(pid)/ns/net \(Self.runtime) \(Self.image) web2 busybox wget -qO- http://127.0.0.1:8080/")
                #expect(peer.status == 0 && peer.output == "hello from the pod\n", "\(peer.output)")
                #expect(net.leftovers().contains("ingress"), "the mirror is in place while the pod runs")
                #expect(try await cd.ctr("task rm -f web").status == 0)
                #expect(try await cd.ctr("container rm web").status == 0)
                #expect(net.leftovers().isEmpty, "left in the pod's namespace: \(net.leftovers())")
            }
        }

        @Test func afterTheShimIsKilledContainerdsCleanupRemovesTheMirror() async throws {
            let net = try PodNetwork()
            defer { net.remove() }
            try await withContainerd { cd async throws in
                #expect(try await cd.ctr("run -d --with-ns network:\(net.path) \(Self.runtime) \(Self.image) k9 sleep 600").status == 0)
                #expect(net.leftovers().contains("ingress"))
                #expect(killShim(of: cd.dir, serving: "k9") == 1)
                try await waitForDeadShim(cd)
                _ = try await cd.ctr("task rm -f k9")
                #expect(try await cd.ctr("container rm k9").status == 0)
                // containerd runs `shim delete` for a dead shim on its own time: `task ls` may stop
                // showing RUNNING (the state call fails) before that cleanup has run.
                for _ in 0..<100 where !net.leftovers().isEmpty { try await Task.sleep(for: .milliseconds(100)) }
                #expect(net.leftovers().isEmpty, "left in the pod's namespace: \(net.leftovers())")
            }
        }

        @Test func theHostsNetworkIsRefusedWithAClearMessage() async throws {
            try await withContainerd { cd async throws in
                let run = try await cd.ctr("run --rm --net-host \(Self.runtime) \(Self.image) hn true")
                #expect(run.status != 0)
                #expect(run.output.contains("host's network"), "\(run.output)")
                #expect(try await cd.ctr("run --rm \(Self.runtime) \(Self.image) after-hn true").status == 0)
            }
        }
    }
}
