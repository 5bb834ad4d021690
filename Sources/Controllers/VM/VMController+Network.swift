extension VMController {
    /// Joins the pod's network namespace at `netns` to the running VM (see
    /// `NetworkController`); a no-op for the namespace already joined. WrongState unless
    /// the VM runs.
    public func setUpNetwork(netns: String) async throws(VMControllerError) {
        guard state == .running, let network else { throw .wrongState(operation: "network setup", state: state) }
        try await network.setUp(netns: netns)
    }
}
