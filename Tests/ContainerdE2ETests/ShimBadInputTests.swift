import ContainerdAPI
import Foundation
import Glibc
import SwiftProtobuf
import Testing
import TTRPC

extension ContainerdE2E {
    /// Bad input straight over ttrpc, as a misbehaving or hostile client would send it: every
    /// task method with unknown and malformed ids, in the wrong state, with oversized fields and
    /// malformed options. Each call is answered with the right gRPC code, and the shim keeps
    /// serving its running task.
    @Suite(.timeLimit(.minutes(5))) struct ShimBadInputTests {
        static let image = "docker.io/library/skiff-test:latest"
        static let runtime = "--runtime io.containerd.skiff.v2"

        /// One call and the code it must get (nil: it must succeed).
        struct Case: Sendable {
            var name: String
            var code: TTRPCStatus.Code?
            var call: @Sendable (Containerd_Task_V2_TaskClient, TTRPCCallOptions) async throws -> Void
        }

        /// The calls, against a shim serving the running task `live` (exec `live-exec` running
        /// in it) whose bundle is at `bundle`.
        static func cases(live: String, bundle: String) -> [Case] {
            let unknown = "no-such-task"
            let huge = String(repeating: "x", count: 1 << 20)
            let garbage = Google_Protobuf_Any.with {
                $0.typeURL = "containerd.runc.v1.Options"
                $0.value = Data([0xff, 0xff, 0xff, 0xff, 0x0f])
            }
            let alien = Google_Protobuf_Any.with {
                $0.typeURL = "example.com/not.a.Type"
                $0.value = Data([1, 2, 3])
            }
            var cases: [Case] = []
            func add(_ name: String, _ code: TTRPCStatus.Code?,
                     _ call: @escaping @Sendable (Containerd_Task_V2_TaskClient, TTRPCCallOptions) async throws -> Void) {
                cases.append(Case(name: name, code: code, call: call))
            }
            // Unknown, empty, oversized and path-like ids, in every method that takes one.
            for (label, id, code) in [("unknown", unknown, TTRPCStatus.Code.notFound), ("empty", "", .invalidArgument),
                                      ("1 MiB", huge, .invalidArgument), ("../x", "../x", .invalidArgument)] {
                add("State \(label) id", code) { try await _ = $0.state(.with { $0.id = id }, options: $1) }
                add("Start \(label) id", code) { try await _ = $0.start(.with { $0.id = id }, options: $1) }
                add("Delete \(label) id", code) { try await _ = $0.delete(.with { $0.id = id }, options: $1) }
                add("Pids \(label) id", code) { try await _ = $0.pids(.with { $0.id = id }, options: $1) }
                add("Pause \(label) id", code) { try await _ = $0.pause(.with { $0.id = id }, options: $1) }
                add("Resume \(label) id", code) { try await _ = $0.resume(.with { $0.id = id }, options: $1) }
                add("Kill \(label) id", code) { try await _ = $0.kill(.with { $0.id = id; $0.signal = 9 }, options: $1) }
                add("Exec \(label) id", code) { try await _ = $0.exec(.with { $0.id = id; $0.execID = "e1" }, options: $1) }
                add("ResizePty \(label) id", code) { try await _ = $0.resizePty(.with { $0.id = id; $0.width = 80; $0.height = 24 }, options: $1) }
                add("CloseIO \(label) id", code) { try await _ = $0.closeIO(.with { $0.id = id; $0.stdin = true }, options: $1) }
                add("Update \(label) id", code) { try await _ = $0.update(.with { $0.id = id }, options: $1) }
                add("Wait \(label) id", code) { try await _ = $0.wait(.with { $0.id = id }, options: $1) }
                add("Stats \(label) id", code) { try await _ = $0.stats(.with { $0.id = id }, options: $1) }
                // As runc's shim: Connect answers for an id it does not know (containerd connects
                // before it knows what the shim holds), but not for one that cannot be an id.
                add("Connect \(label) id", code == .notFound ? nil : code) { try await _ = $0.connect(.with { $0.id = id }, options: $1) }
            }
            // Unknown and malformed exec ids of the live task.
            for (label, execID, code) in [("unknown", "no-such-exec", TTRPCStatus.Code.notFound), ("1 MiB", huge, .invalidArgument),
                                          ("../x", "../x", .invalidArgument)] {
                add("State \(label) exec id", code) { try await _ = $0.state(.with { $0.id = live; $0.execID = execID }, options: $1) }
                add("Kill \(label) exec id", code) { try await _ = $0.kill(.with { $0.id = live; $0.execID = execID; $0.signal = 9 }, options: $1) }
                add("Wait \(label) exec id", code) { try await _ = $0.wait(.with { $0.id = live; $0.execID = execID }, options: $1) }
                add("Delete \(label) exec id", code) { try await _ = $0.delete(.with { $0.id = live; $0.execID = execID }, options: $1) }
                add("ResizePty \(label) exec id", code) { try await _ = $0.resizePty(.with { $0.id = live; $0.execID = execID; $0.width = 1; $0.height = 1 }, options: $1) }
            }
            // Wrong states.
            add("Create of a live id", .alreadyExists) { try await _ = $0.create(.with { $0.id = live; $0.bundle = bundle }, options: $1) }
            add("Start of a running task", .failedPrecondition) { try await _ = $0.start(.with { $0.id = live }, options: $1) }
            add("Resume of a task not paused", .failedPrecondition) { try await _ = $0.resume(.with { $0.id = live }, options: $1) }
            add("Delete of a running task", .failedPrecondition) { try await _ = $0.delete(.with { $0.id = live }, options: $1) }
            add("Exec with an exec id in use", .alreadyExists) {
                try await _ = $0.exec(.with { $0.id = live; $0.execID = "live-exec"; $0.spec = Self.processSpec(["true"]) }, options: $1)
            }
            add("Exec without a process spec", .invalidArgument) { try await _ = $0.exec(.with { $0.id = live; $0.execID = "nospec" }, options: $1) }
            add("Exec with a spec that is not a process", .invalidArgument) {
                try await _ = $0.exec(.with { $0.id = live; $0.execID = "alien"; $0.spec = alien }, options: $1)
            }
            add("Exec with empty args", .invalidArgument) {
                try await _ = $0.exec(.with { $0.id = live; $0.execID = "noargs"; $0.spec = Self.processSpec([]) }, options: $1)
            }
            add("Checkpoint", .unimplemented) { try await _ = $0.checkpoint(.with { $0.id = live; $0.path = "/tmp/x" }, options: $1) }
            // Malformed options and resources.
            add("Create with malformed options", .invalidArgument) {
                try await _ = $0.create(.with { $0.id = "bad-options"; $0.bundle = bundle; $0.options = garbage }, options: $1)
            }
            add("Create with options of an unknown type", .invalidArgument) {
                try await _ = $0.create(.with { $0.id = "alien-options"; $0.bundle = bundle; $0.options = alien }, options: $1)
            }
            add("Create with no bundle", .invalidArgument) { try await _ = $0.create(.with { $0.id = "no-bundle" }, options: $1) }
            add("Create with a relative bundle", .invalidArgument) { try await _ = $0.create(.with { $0.id = "rel-bundle"; $0.bundle = "x/y" }, options: $1) }
            add("Update with malformed resources", .invalidArgument) { try await _ = $0.update(.with { $0.id = live; $0.resources = garbage }, options: $1) }
            add("Update with resources of an unknown type", .invalidArgument) { try await _ = $0.update(.with { $0.id = live; $0.resources = alien }, options: $1) }
            return cases
        }

        /// A ttrpc client on the shim serving the task whose bundle is `bundle` (its `address`
        /// file), and call options in containerd's `default` namespace.
        static func connect(toShimOf bundle: String) async throws -> (TTRPCClient, Containerd_Task_V2_TaskClient, TTRPCCallOptions) {
            let address = try String(contentsOfFile: bundle + "/address", encoding: .utf8)
            var metadata = TTRPCMetadata()
            metadata.append("default", for: "containerd-namespace-ttrpc")
            let client = try await TTRPCClient.connect(unixSocket: String(address.dropFirst("unix://".count)))
            return (client, Containerd_Task_V2_TaskClient(client), TTRPCCallOptions(metadata: metadata))
        }

        /// An OCI process spec as the Any containerd sends with Exec.
        static func processSpec(_ args: [String]) -> Google_Protobuf_Any {
            var any = Google_Protobuf_Any()
            any.typeURL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
            let json = try? JSONSerialization.data(withJSONObject: ["args": args, "cwd": "/", "env": ["PATH=/bin:/usr/bin"]])
            any.value = json ?? Data()
            return any
        }

        @Test func everyTaskMethodAnswersBadInputWithTheRightCodeAndTheShimServesOn() async throws {
            try await withContainerd { cd in
                #expect(try await cd.ctr("run -d \(Self.runtime) \(Self.image) live sleep 600").status == 0)
                #expect(try await cd.ctr("task exec -d --exec-id live-exec live sleep 600").status == 0)
                let bundle = "\(cd.dir)/state/io.containerd.runtime.v2.task/default/live"
                let (client, task, options) = try await Self.connect(toShimOf: bundle)
                var wrong: [String] = []
                for c in Self.cases(live: "live", bundle: bundle) {
                    do {
                        try await c.call(task, options)
                        if let code = c.code { wrong.append("\(c.name): accepted, wanted \(code)") }
                    } catch let status as TTRPCStatus {
                        if status.code != c.code { wrong.append("\(c.name): \(status.code) (\(status.message.prefix(160))), wanted \(String(describing: c.code))") }
                        if status.message.utf8.count > 1024 { wrong.append("\(c.name): a message of \(status.message.utf8.count) bytes") }
                    } catch {
                        wrong.append("\(c.name): \(error), wanted \(String(describing: c.code))")
                    }
                    // The shim still serves the live task after each.
                    let state = try await task.state(.with { $0.id = "live" }, options: options)
                    if state.status != .running { wrong.append("after \(c.name): the live task is \(state.status)") }
                }
                #expect(wrong.isEmpty, "\(wrong.count) answers wrong:\n\(wrong.joined(separator: "\n"))")
                await client.close()
                #expect(try await cd.ctr("task exec --exec-id after live true").status == 0, "the next good call is served")
                try await killAndDelete(cd, "live")
            }
        }
    }
}

extension ContainerdE2E.ShimBadInputTests {
    /// The live task's spec with `change` applied, written as the config.json of a new bundle
    /// (an empty root) under `dir`; the bundle's path.
    static func bundle(from spec: [String: Any], in dir: String, named name: String, _ change: (inout [String: Any]) -> Void) throws -> String {
        var spec = spec
        change(&spec)
        let bundle = dir + "/bad-spec-" + name
        try FileManager.default.createDirectory(atPath: bundle + "/rootfs", withIntermediateDirectories: true)
        try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: bundle + "/config.json"))
        return bundle
    }

    @Test func specsWithMissingOrAbsurdFieldsAreRefusedInvalidArgumentAndTheShimServesOn() async throws {
        try await withContainerd { cd in
            #expect(try await cd.ctr("run -d \(Self.runtime) \(Self.image) live2 sleep 600").status == 0)
            let state = "\(cd.dir)/state/io.containerd.runtime.v2.task/default/live2"
            let data = try #require(FileManager.default.contents(atPath: state + "/config.json"))
            let spec = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            let (client, task, options) = try await Self.connect(toShimOf: state)

            func process(_ spec: inout [String: Any], _ change: (inout [String: Any]) -> Void) {
                var process = spec["process"] as? [String: Any] ?? [:]
                change(&process)
                spec["process"] = process
            }
            func resources(_ spec: inout [String: Any], _ key: String, _ value: [String: Any]) {
                var linux = spec["linux"] as? [String: Any] ?? [:]
                var resources = linux["resources"] as? [String: Any] ?? [:]
                resources[key] = value
                linux["resources"] = resources
                spec["linux"] = linux
            }
            let cases: [(String, TTRPCStatus.Code, (inout [String: Any]) -> Void)] = [
                ("no process", .invalidArgument, { $0["process"] = nil }),
                ("no root", .invalidArgument, { $0["root"] = nil }),
                ("a relative cwd", .invalidArgument, { process(&$0) { $0["cwd"] = "tmp" } }),
                ("args that are not strings", .invalidArgument, { process(&$0) { $0["args"] = [1, 2] } }),
                ("a negative memory limit", .invalidArgument, { resources(&$0, "memory", ["limit": -5]) }),
                ("an empty cwd", .invalidArgument, { process(&$0) { $0["cwd"] = "" } }),
                ("env that is not strings", .invalidArgument, { process(&$0) { $0["env"] = [["a": 1]] } }),
                ("a 200 KB argument", .invalidArgument, { process(&$0) { $0["args"] = ["sleep", String(repeating: "1", count: 200_000)] } }),
                ("10 MB of env", .invalidArgument, { process(&$0) { $0["env"] = (0..<10_000).map { "V\($0)=" + String(repeating: "x", count: 1000) } } }),
                ("100k mounts", .invalidArgument, { spec in
                    spec["mounts"] = (0..<100_000).map { ["destination": "/m\($0)", "type": "tmpfs", "source": "tmpfs"] }
                }),
                ("a mount destination with ..", .invalidArgument, { spec in
                    spec["mounts"] = [["destination": "/data/../../etc", "type": "tmpfs", "source": "tmpfs"]]
                }),
                ("a relative mount destination", .invalidArgument, { spec in
                    spec["mounts"] = [["destination": "data", "type": "tmpfs", "source": "tmpfs"]]
                }),
                ("a bind mount of a relative host path", .invalidArgument, { spec in
                    spec["mounts"] = [["destination": "/data", "type": "bind", "source": "some/dir", "options": ["rbind"]]]
                }),
            ]
            var wrong: [String] = []
            for (index, (name, code, change)) in cases.enumerated() {
                let bundle = try Self.bundle(from: spec, in: cd.dir, named: "\(index)", change)
                do {
                    _ = try await task.create(.with { $0.id = "bad-spec-\(index)"; $0.bundle = bundle }, options: options)
                    wrong.append("\(name): accepted")
                    _ = try? await task.delete(.with { $0.id = "bad-spec-\(index)" }, options: options)
                } catch let status as TTRPCStatus {
                    if status.code != code { wrong.append("\(name): \(status.code) (\(status.message.prefix(200))), wanted \(code)") }
                }
                try? FileManager.default.removeItem(atPath: bundle)
                let live = try await task.state(.with { $0.id = "live2" }, options: options)
                if live.status != .running { wrong.append("after \(name): the live task is \(live.status)") }
            }
            #expect(wrong.isEmpty, "\(wrong.count) answers wrong:\n\(wrong.joined(separator: "\n"))")
            await client.close()
            #expect(try await cd.ctr("task exec --exec-id after live2 true").status == 0, "the next good call is served")
            try await killAndDelete(cd, "live2")
        }
    }

    @Test func pathsArgumentsAndEnvWithSpacesAndShellCharactersAreDataNotCode() async throws {
        try await withContainerd { cd in
            let host = cd.dir + "/a dir; with $(touch pwned) `id` & quotes"
            try FileManager.default.createDirectory(atPath: host, withIntermediateDirectories: true)
            try "literal\n".write(toFile: host + "/f", atomically: false, encoding: .utf8)
            let marker = cd.dir + "/pwned"
            // Each word single-quoted for the test's own shell, so only ctr and the shim see them.
            func quoted(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'" }
            let env = quoted("X=$(touch /pwned); `id`")
            let mount = quoted("type=bind,src=\(host),dst=/mnt/a b;$(id),options=rbind:ro")
            let script = quoted(#"printf "%s|" "$X"; cat "/mnt/a b;\$(id)/f"; ls /pwned 2>&1 | grep -c "No such""#)
            let run = await cd.shellWithCtr("CTR run --rm --runtime io.containerd.skiff.v2 --env \(env) --mount \(mount) \(Self.image) shell1 sh -c \(script)")
            #expect(run.status == 0, "\(run.output)")
            #expect(run.output == "$(touch /pwned); `id`|literal\n1\n", "\(run.output)")
            #expect(!FileManager.default.fileExists(atPath: marker))
            #expect(!FileManager.default.fileExists(atPath: "pwned"))
        }
    }
}
