import SkiffSupport
import Testing
@testable import ShimProcess

@Suite struct ShimContractTests {
    @Test func sha256MatchesTheStandardVectors() {
        #expect(SHA256.hex([UInt8]()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hex([UInt8](repeating: 0x61, count: 1_000_000)) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func theSocketIsNamedAsContainerdNamesIt() {
        // printf '%s' /run/containerd/containerd.sock.ttrpc/default/pod1 | sha256sum
        let address = ShimSocket.address(containerdAddress: "/run/containerd/containerd.sock.ttrpc", namespace: "default", group: "pod1")
        #expect(address == "unix:///run/containerd/s/51e2337ef68924933d7ec82ef962350ef45db97993752ff83d29bf315e4e81dc")
        #expect(ShimSocket.socketPath(of: address).hasPrefix("/run/containerd/s/"))
        #expect(ShimSocket.socketPath(of: address).count == "/run/containerd/s/".count + 64)
    }

    @Test func containersOfOnePodShareAGroupAndOthersUseTheirId() {
        #expect(ShimSocket.group(id: "c1", annotations: ["io.kubernetes.cri.sandbox-id": "pod9"]) == "pod9")
        #expect(ShimSocket.group(id: "c1", annotations: [:]) == "c1")
        #expect(ShimSocket.group(id: "c1", annotations: ["io.kubernetes.cri.sandbox-id": ""]) == "c1")
    }

    @Test func argumentsParseAsGoFlags() throws {
        let args = try ShimArguments(parsing: ["-namespace", "k8s.io", "-address", "/run/containerd/containerd.sock",
                                               "-publish-binary", "/usr/bin/containerd", "-id", "c1", "-debug", "start"])
        #expect(args.namespace == "k8s.io")
        #expect(args.address == "/run/containerd/containerd.sock")
        #expect(args.id == "c1")
        #expect(args.debug)
        #expect(args.action == .start)
        let delete = try ShimArguments(parsing: ["-namespace=default", "-id=c2", "-bundle", "/b", "delete"])
        #expect(delete.namespace == "default" && delete.bundle == "/b" && delete.action == .delete)
        #expect(try ShimArguments(parsing: ["-v"]).version)
        #expect(try ShimArguments(parsing: ["-id", "x"]).action == .serve)
        #expect(throws: SkiffError.self) { try ShimArguments(parsing: ["-bogus"]) }
        #expect(throws: SkiffError.self) { try ShimArguments(parsing: ["-id"]) }
        #expect(throws: SkiffError.self) { try ShimArguments(parsing: ["explode"]) }
    }

    @Test func bootstrapOutputIsTheBareAddressFor16AndJSONWhenAVersionIsAsked() {
        #expect(ShimBootstrap.output(address: "unix:///run/containerd/s/ab", protocolVersion: nil) == "unix:///run/containerd/s/ab")
        #expect(ShimBootstrap.output(address: "unix:///run/containerd/s/ab", protocolVersion: 3)
                == #"{"version":3,"address":"unix:///run/containerd/s/ab","protocol":"ttrpc"}"#)
        #expect(ShimBootstrap.output(address: "unix:///run/containerd/s/ab", protocolVersion: 2)
                == #"{"version":2,"address":"unix:///run/containerd/s/ab","protocol":"ttrpc"}"#)
    }
}
