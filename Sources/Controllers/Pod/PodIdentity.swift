import SkiffSupport

/// Which pod (and VM) a container belongs to.
public enum PodIdentity {
    /// The bundle annotation that groups containers into one pod (the CRI plugin's sandbox id).
    public static let sandboxAnnotation = "io.kubernetes.cri.sandbox-id"

    /// The group of a container: its sandbox annotation, else its own id.
    public static func group(id: String, annotations: [String: String]) -> String {
        annotations[sandboxAnnotation].flatMap { $0.isEmpty ? nil : $0 } ?? id
    }

    /// The pod's VM id: `pod-` and 12 hex digits of the SHA-256 of `SCOPE/GROUP`, where the
    /// scope names the containerd and namespace (`ADDRESS/NAMESPACE`), so the same container id
    /// under two containerds or two namespaces gets two VMs.
    public static func vmID(scope: String, group: String) -> String {
        "pod-" + String(SHA256.hex(Array("\(scope)/\(group)".utf8)).prefix(12))
    }
}
