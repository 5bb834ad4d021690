import ContainerdAPI
import Foundation
import Glibc
import SwiftProtobuf
import VMController

/// `containerd-shim-skiff-v2 ... -bundle B delete`: containerd's cleanup call, made when the
/// shim is gone (killed, crashed) or a task failed. Tears down from durable files alone: the
/// VM named in the bundle's `skiff-vm` (through its handles file) and the rootfs mount, then
/// prints a DeleteResponse (exit status 137, exited now).
public enum ShimDelete {
    public static func run(_ arguments: ShimArguments, bundle: TaskBundle) async -> (response: Data, failures: [String]) {
        var failures: [String] = []
        if let stateDirectory = try? String(contentsOfFile: bundle.vmFile, encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines), !stateDirectory.isEmpty {
            failures += await HostCleanup.run(handlesFile: stateDirectory + "/handles.json")
            if failures.isEmpty { unlink(bundle.vmFile) }
        }
        if umount2(bundle.rootfs, Int32(MNT_DETACH)) != 0, errno != EINVAL, errno != ENOENT {
            failures.append("unmount \(bundle.rootfs): \(String(cString: strerror(errno)))")
        }
        var response = Containerd_Task_V2_DeleteResponse()
        response.exitStatus = 137
        response.exitedAt = Google_Protobuf_Timestamp(date: Date())
        return ((try? response.serializedData()) ?? Data(), failures)
    }
}
