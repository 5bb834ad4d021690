import SkiffSupport
import ContainerdAPI
import FoundationEssentials
import Glibc
import SwiftProtobuf
import TTRPC
import PodController

/// `containerd-shim-skiff-v2 ... -bundle B delete`: containerd's cleanup call, made when the
/// shim is gone (killed, crashed) or a task failed. Tears down from durable files alone: the
/// VM named in the bundle's `skiff-vm` (through its handles file; every container of the pod
/// names it) unless the pod's shim still answers, and the rootfs mount; then prints a
/// DeleteResponse (exit status 137, exited now).
public enum ShimDelete {
    public static func run(_ arguments: ShimArguments, bundle: TaskBundle) async -> (response: Data, failures: [String]) {
        var failures: [String] = []
        // containerd also calls this after a live shim merely closed one task's connection;
        // a pod's VM is torn down only when the shim that owns it is really gone.
        let address = (try? String(contentsOfFile: bundle.addressFile, encoding: .utf8))?
            .trimmed() ?? ""
        var shimAlive = false
        if !address.isEmpty { shimAlive = await answersTaskCalls(ShimSocket.socketPath(of: address), id: arguments.id) }
        // A dead shim's socket file stays behind it (a shim that does not answer a task call is
        // treated as dead: its VM goes below too).
        if !address.isEmpty, !shimAlive {
            unlink(ShimSocket.socketPath(of: address))
        }
        failures += await PodCleanup.run(bundle: bundle, includingVM: !shimAlive)
        var response = Containerd_Task_V2_DeleteResponse()
        response.exitStatus = 137
        response.exitedAt = Google_Protobuf_Timestamp(date: Date())
        return ((try? response.serializedData()) ?? Data(), failures)
    }

    /// Whether a shim on `path` answers a Task call. A bare connect is not enough: a shim that is
    /// being killed can still hold its listening socket for a moment.
    static func answersTaskCalls(_ path: String, id: String) async -> Bool {
        guard ShimStart.answers(path), let client = try? await TTRPCClient.connect(unixSocket: path) else { return false }
        defer { Task { await client.close() } }
        do {
            _ = try await Containerd_Task_V2_TaskClient(client).connect(.with { $0.id = id }, options: TTRPCCallOptions(timeout: .seconds(2)))
            return true
        } catch {
            return false
        }
    }
}
