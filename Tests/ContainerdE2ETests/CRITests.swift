import Foundation
import Glibc
import Testing

/// A private containerd with its CRI plugin on, run inside a network namespace of the test's
/// own (so CNI's bridge lives there), with Debian's CNI plugins and the `skiff` runtime; driven
/// over its gRPC socket as kubelet drives it (Tests/ContainerdE2ETests/cri/cri-client).
final class PrivateCRI: @unchecked Sendable {
    let netns: String
    let dir: String
    let socket: String
    let client: String
    static let image = "docker.io/library/skiff-test:latest"
    static let pause = "docker.io/library/skiff-pause:latest"

    init() throws {
        let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        let root = here.deletingLastPathComponent().deletingLastPathComponent().path
        client = here.path + "/cri/cri-client"
        let bin = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")).deletingLastPathComponent().path
        netns = "skiff-cri\(getpid() % 10000)"
        dir = "/tmp/skiff-cri-\(UUID().uuidString.prefix(8))"
        _ = try PrivateContainerd.shell("ip netns add \(netns) && ip -n \(netns) link set lo up")
        socket = try PrivateContainerd.shell("\(root)/scripts/containerd-private start-cri \(dir) \(bin) \(netns) \(Self.pause)")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        _ = try PrivateContainerd.shell("""
            \(root)/scripts/make-test-image \(dir)/image.tar && \(root)/scripts/make-test-image \(dir)/pause.tar \(Self.pause) '["sleep", "2147483647"]' &&
            ctr --address \(socket) -n k8s.io image import \(dir)/image.tar && ctr --address \(socket) -n k8s.io image import \(dir)/pause.tar
            """)
    }

    /// `cri-client SOCKET ARGS`: its status and output.
    func cri(_ arguments: String) async -> (status: Int32, output: String) {
        let out = dir + "/cri-\(UUID().uuidString.prefix(6)).out"
        defer { unlink(out) }
        let status = await PrivateContainerd.system("CRI_CLIENT_CACHE=\(dir)/client timeout 240 \(client) \(socket) \(arguments) >\(out) 2>&1 </dev/null")
        return ((status >> 8) & 0xff, ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// A command in the test's namespace (the bridge's side of the pods); status and output.
    func fromBridge(_ command: String) async -> (status: Int32, output: String) {
        let out = dir + "/br-\(UUID().uuidString.prefix(6)).out"
        defer { unlink(out) }
        let status = await PrivateContainerd.system("timeout 60 ip netns exec \(netns) \(command) >\(out) 2>&1 </dev/null")
        return ((status >> 8) & 0xff, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
    }

    func stop() {
        _ = try? PrivateContainerd.shell("scripts=$(dirname \(client))/../../../scripts; $scripts/containerd-private stop \(dir); ip netns del \(netns)")
    }
}

extension ContainerdE2E {
    /// Kubernetes' path: RunPodSandbox with the `skiff` handler through containerd's CRI plugin
    /// and CNI, then containers, ExecSync and statuses, then the teardown kubelet does.
    @Suite(.timeLimit(.minutes(6))) struct CRITests {
        /// Runs `body` against a CRI containerd; afterwards nothing of Skiff's may be left.
        private func withCRI(_ body: (PrivateCRI) async throws -> Void) async throws {
            let cri = try PrivateCRI()
            do { try await body(cri) } catch {
                cri.stop()
                throw error
            }
            try await expectNoLeftovers(of: cri.dir)
            cri.stop()
            let netns = (try? PrivateContainerd.shell("ip netns list")) ?? ""
            #expect(!netns.contains("cni-"), "CNI namespaces left: \(netns)")
        }

        @Test func aPodRunsInOneVMAnswersOnItsIPSharesLocalhostAndDNSAndLeavesNothing() async throws {
            try await withCRI { cri in
                let runp = await cri.cri("runp web-pod skiff 10.233.0.53 skiff.test")
                #expect(runp.status == 0, "\(runp.output)")
                let pod = runp.output
                #expect(await cri.cri("podstate \(pod)").output == "SANDBOX_READY")
                let ip = await cri.cri("podip \(pod)").output
                #expect(ip.hasPrefix("10.233.0."), "pod IP \(ip)")
                let web = await cri.cri("""
                    create \(pod) web \(PrivateCRI.image) sh -c 'mkdir -p /tmp/www && echo hello from the pod > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www'
                    """)
                #expect(web.status == 0, "\(web.output)")
                #expect(await cri.cri("start \(web.output)").status == 0)
                let side = await cri.cri("create \(pod) side \(PrivateCRI.image) sleep 600")
                #expect(await cri.cri("start \(side.output)").status == 0)
                #expect(await cri.cri("state \(web.output)").output == "CONTAINER_RUNNING 0")
                #expect(skiffQEMUs(of: cri.dir).count == 1, "one VM for the pod")
                // The pod's server from the bridge's side, on the pod's IP.
                var answer = await cri.fromBridge("/usr/bin/python3 -c \"import urllib.request; print(urllib.request.urlopen('http://\(ip):8080/', timeout=20).read().decode(), end='')\"")
                for _ in 0..<20 where answer.status != 0 {
                    try await Task.sleep(for: .milliseconds(250))
                    answer = await cri.fromBridge("/usr/bin/python3 -c \"import urllib.request; print(urllib.request.urlopen('http://\(ip):8080/', timeout=20).read().decode(), end='')\"")
                }
                #expect(answer.output == "hello from the pod\n", "\(answer.output)")
                // The other container reaches it on localhost; ExecSync carries exit codes.
                let local = await cri.cri("exec \(side.output) wget -qO- http://127.0.0.1:8080/")
                #expect(local.status == 0 && local.output == "hello from the pod", "\(local.output)")
                #expect(await cri.cri("exec \(side.output) sh -c 'exit 3'").status == 3)
                // The pod's DNS settings, hostname and hosts reach the containers.
                let resolv = await cri.cri("exec \(side.output) cat /etc/resolv.conf")
                #expect(resolv.output.contains("nameserver 10.233.0.53") && resolv.output.contains("search skiff.test"), "\(resolv.output)")
                #expect(await cri.cri("exec \(side.output) hostname").output == "web-pod")
                // containerd 1.6's CRI plugin gives the pod the host's /etc/hosts (kubelet would mount its own).
                let hosts = ((try? String(contentsOfFile: "/etc/hosts", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
                #expect(await cri.cri("exec \(side.output) cat /etc/hosts").output == hosts)
                let ipInPod = await cri.cri("exec \(side.output) ip -o addr")
                #expect(ipInPod.output.contains(ip + "/24"), "\(ipInPod.output)")
                // kubelet's teardown.
                for container in [side.output, web.output] {
                    #expect(await cri.cri("stop \(container)").status == 0)
                    #expect(await cri.cri("state \(container)").output.hasPrefix("CONTAINER_EXITED"))
                    #expect(await cri.cri("rm \(container)").status == 0)
                }
                #expect(await cri.cri("stopp \(pod)").status == 0)
                #expect(await cri.cri("rmp \(pod)").status == 0)
                #expect(skiffQEMUs(of: cri.dir).isEmpty, "the VM ends with the pod")
            }
        }

        @Test func aKilledShimIsCleanedUpByTheCRIPluginsOwnTeardown() async throws {
            try await withCRI { cri in
                let pod = await cri.cri("runp killed-pod skiff").output
                let box = await cri.cri("create \(pod) box \(PrivateCRI.image) sleep 600").output
                #expect(await cri.cri("start \(box)").status == 0)
                #expect(killShim(of: cri.dir, serving: pod) == 1)
                _ = await cri.cri("stop \(box)")
                _ = await cri.cri("rm \(box)")
                #expect(await cri.cri("stopp \(pod)").status == 0)
                #expect(await cri.cri("rmp \(pod)").status == 0)
                for _ in 0..<100 where !skiffQEMUs(of: cri.dir).isEmpty { try await Task.sleep(for: .milliseconds(50)) }
                #expect(skiffQEMUs(of: cri.dir).isEmpty, "QEMU left after the CRI plugin's cleanup")
            }
        }
    }
}
