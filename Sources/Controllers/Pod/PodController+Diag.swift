import FoundationEssentials
import Glibc
import SkiffSupport
import VMController

/// What shimdiag asks of the pod: a command in the VM itself (outside every container), the
/// pod's tasks, and a host directory shared into the VM at a path of the caller's choosing.
extension PodController {
    private func runningGuest() async throws(SkiffError) -> any PodGuest {
        guard let vm, let guest = await vm.guest() else { throw .failedPrecondition("the VM is not running") }
        return guest
    }

    /// Runs `args` in the VM with stdio paths (fifos or `file://`; empty: none), on a terminal
    /// of `width` x `height` if asked (its output is on stdout). Stdin ends when its writer
    /// closes the fifo. Returns the exit code (128 + the signal for a killed process).
    public func execInVM(args: [String], workdir: String, stdin: String = "", stdout: String, stderr: String,
                         terminal: Bool = false, width: UInt32 = 0, height: UInt32 = 0) async throws(SkiffError) -> Int32 {
        guard !args.isEmpty else { throw .invalidArgument("exec needs a command") }
        guard width <= UInt16.max, height <= UInt16.max else { throw .invalidArgument("terminal size \(width)x\(height) is out of range") }
        let guest = try await runningGuest()
        let io = try guest.openDiagStdio(stdin: stdin, stdout: stdout, stderr: stderr, terminal: terminal)
        let processID = "diag-\(UInt32.random(in: 0...UInt32.max))"
        do {
            try await guestCall("run \(args[0]) in the VM") {
                try await guest.runInVM(processID: processID, args: args, workdir: workdir, io: io, terminal: terminal, width: width, height: height)
            }
        } catch {
            io.abandon()
            throw error
        }
        let exit = try? await guest.waitProcess(processID)
        io.stopStdin()
        await io.finished.value
        try? await guest.deleteProcess(processID)
        guard let exit else { throw .unavailable("lost the exit of \(args[0]): the VM's agent went away") }
        return Int32(clamping: exit.status)
    }

    /// The pod's containers, each with its state and, when asked, its execs.
    public func taskList() async -> [(id: String, state: String, execs: [(id: String, state: String)])] {
        var list: [(id: String, state: String, execs: [(id: String, state: String)])] = []
        for container in containers.values.sorted(by: { $0.id < $1.id }) {
            var execs: [(id: String, state: String)] = []
            for (execID, exec) in await container.execs.sorted(by: { $0.key < $1.key }) {
                execs.append((execID, "\(await exec.status)"))
            }
            list.append((container.id, "\(await container.initProcess.status)", execs))
        }
        return list
    }

    /// Shares `hostPath` into the VM and mounts it at `guestPath` there (read-only if asked).
    /// It stays until the VM ends.
    public func shareIntoVM(hostPath: String, guestPath: String, readOnly: Bool) async throws(SkiffError) {
        guard hostPath.hasPrefix("/"), guestPath.hasPrefix("/") else { throw .invalidArgument("both paths must be absolute") }
        guard access(hostPath, F_OK) == 0 else { throw .invalidArgument("\(hostPath) does not exist") }
        let guest = try await runningGuest()
        guard let shares = await vm?.shares() else { throw .failedPrecondition("the VM is not running") }
        let share = try await guestCall("share \(hostPath)") { try await shares.reserve(hostPath: hostPath, readOnly: readOnly) }
        do {
            try await guestCall("share \(hostPath) at \(guestPath)") {
                let mapped = try await shares.mapToGuest(share)
                try await guest.mount(source: mapped, target: guestPath, readOnly: readOnly)
            }
        } catch {
            // Half made (host bind, guest mount): undone, so a refused share holds nothing.
            do { try await shares.unmapFromGuest(share) } catch { logger.error("undoing the share of \(hostPath): \(error)") }
            throw error
        }
    }

    /// The VM's agent's threads, as the guest sees them.
    public func guestStacks() async throws(SkiffError) -> String {
        guard let vm else { throw .failedPrecondition("the VM is not running") }
        return try await guestCall("guest stacks") { try await vm.dumpStacks() }
    }

    /// The PCI devices assigned to the VM (none when it does not run).
    public func pciDevices() async -> [VPCIController.Assignment] {
        guard let devices = await vm?.devices() else { return [] }
        return await devices.assignments
    }
}
