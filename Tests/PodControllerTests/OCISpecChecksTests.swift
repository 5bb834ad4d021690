import Foundation
@testable import PodController
import SkiffSupport
import Testing

/// Specs the shim refuses before anything reaches the VM, each member of a kind: a required
/// field missing or malformed, a path that climbs, a size no container needs.
@Suite struct OCISpecChecksTests {
    /// containerd's spec (OCISpecTests) decoded, then changed by `change` as JSON.
    private func spec(_ change: (inout [String: Any]) -> Void = { _ in }) throws -> OCISpec {
        var object = try #require(try JSONSerialization.jsonObject(with: Data(OCISpecTests.containerdSpec.utf8)) as? [String: Any])
        change(&object)
        return try JSONDecoder().decode(OCISpec.self, from: try JSONSerialization.data(withJSONObject: object))
    }

    private func process(_ change: @escaping (inout [String: Any]) -> Void) -> (inout [String: Any]) -> Void {
        { spec in
            var process = spec["process"] as? [String: Any] ?? [:]
            change(&process)
            spec["process"] = process
        }
    }

    private func refusal(_ spec: OCISpec) -> String? {
        do { try OCISpecChecks.check(spec) } catch {
            return error.code == .invalidArgument ? error.message : "not InvalidArgument: \(error)"
        }
        return nil
    }

    @Test func containerdsOwnSpecPasses() throws {
        #expect(refusal(try spec()) == nil)
    }

    @Test(arguments: [
        ("no process", "no process"),
        ("no args", "process.args"),
        ("a relative cwd", "process.cwd"),
        ("no cwd", "process.cwd"),
        ("env of numbers", "process.env"),
        ("a 200 KB argument", "MAX_ARG_STRLEN"),
        ("3 MB of env", "what execve takes"),
        ("no root", "root.path"),
        ("5000 mounts", "at most 4096"),
        ("a relative mount destination", "absolute destination"),
        ("a mount destination that climbs", "'..'"),
        ("a negative memory limit", "memory.limit"),
    ])
    func aBadSpecIsRefusedNamingTheField(_ name: String, _ named: String) throws {
        let change: (inout [String: Any]) -> Void
        switch name {
        case "no process": change = { $0["process"] = nil }
        case "no args": change = process { $0["args"] = [] }
        case "a relative cwd": change = process { $0["cwd"] = "tmp" }
        case "no cwd": change = process { $0["cwd"] = nil }
        case "env of numbers": change = process { $0["env"] = [1] }
        case "a 200 KB argument": change = process { $0["args"] = ["sh", String(repeating: "a", count: 200_000)] }
        case "3 MB of env": change = process { $0["env"] = (0..<3000).map { "V\($0)=" + String(repeating: "x", count: 1000) } }
        case "no root": change = { $0["root"] = nil }
        case "5000 mounts": change = { $0["mounts"] = (0..<5000).map { ["destination": "/m\($0)", "type": "tmpfs"] } }
        case "a relative mount destination": change = { $0["mounts"] = [["destination": "data", "type": "tmpfs"]] }
        case "a mount destination that climbs": change = { $0["mounts"] = [["destination": "/data/../../etc", "type": "tmpfs"]] }
        default:
            change = { spec in
                var linux = spec["linux"] as? [String: Any] ?? [:]
                linux["resources"] = ["memory": ["limit": -5]]
                spec["linux"] = linux
            }
        }
        let message = refusal(try spec(change))
        #expect(message?.contains(named) == true, "\(name): \(message ?? "accepted")")
    }

    @Test func whatRuncAcceptsPasses() throws {
        // No memory limit (-1), a mount destination with '.' and '..' inside a name, 2 MB of env.
        let accepted = try spec { spec in
            var linux = spec["linux"] as? [String: Any] ?? [:]
            linux["resources"] = ["memory": ["limit": -1], "pids": ["limit": -1]]
            spec["linux"] = linux
            spec["mounts"] = [["destination": "/data/a..b/./c", "type": "tmpfs"]]
            var process = spec["process"] as? [String: Any] ?? [:]
            process["env"] = (0..<1900).map { "V\($0)=" + String(repeating: "x", count: 1000) }
            spec["process"] = process
        }
        #expect(refusal(accepted) == nil)
    }

    @Test func aNegativePidsLimitIsNoLimitAsUnderRunc() throws {
        let negative = try spec { spec in
            var linux = spec["linux"] as? [String: Any] ?? [:]
            linux["resources"] = ["pids": ["limit": -7], "memory": ["limit": 1 << 30]]
            spec["linux"] = linux
        }
        let guest = GuestSpec.make(negative, mountSources: [:], podPids: []).spec
        #expect(guest.linux?.resources?.pids == nil)
        #expect(guest.linux?.resources?.memory?.limit == 1 << 30)
    }
}
