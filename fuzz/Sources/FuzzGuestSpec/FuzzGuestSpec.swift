import FoundationEssentials
@testable import PodController

/// libFuzzer entry: the input is a config.json as containerd (or anyone who can write a
/// bundle) could hand the shim. What decodes and passes OCISpecChecks goes through the whole
/// host-side path to the guest: the guest spec, the pod network and bind mounts read from it.
/// Nothing may crash or hang; the guest spec must encode and decode to itself, keep the root
/// at the path Skiff chose, and carry no host security label.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGuestSpec(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let data = Data(bytes: start, count: count)
    guard let spec = try? JSONDecoder().decode(OCISpec.self, from: data) else { return 0 }
    guard (try? OCISpecChecks.check(spec)) != nil else { return 0 }
    let podPids: Set<UInt32> = [1, 42]
    _ = try? GuestSpec.podNetwork(of: spec, podPids: podPids)
    let sources = Dictionary(uniqueKeysWithValues: (0..<min(spec.mounts?.count ?? 0, 4)).map { ($0, "/run/skiff/mounts/\($0)") })
    let (guest, _) = GuestSpec.make(spec, mountSources: sources, podPids: podPids, root: "/run/skiff/rootfs/fuzz")
    precondition(guest.root?.path == "/run/skiff/rootfs/fuzz", "the guest root is not the one Skiff chose")
    precondition(guest.process?.apparmorProfile == nil && guest.process?.selinuxLabel == nil, "a host label reached the guest")
    precondition(guest.linux?.mountLabel == nil, "a host mount label reached the guest")
    if let limit = guest.linux?.resources?.pids?.limit { precondition(limit >= 0, "a negative pids limit reached crun") }
    guard let encoded = try? JSONEncoder().encode(guest) else { preconditionFailure("the guest spec does not encode") }
    let decoded = try? JSONDecoder().decode(OCISpec.self, from: encoded)
    precondition(decoded == guest, "the guest spec does not decode to itself")
    return 0
}
