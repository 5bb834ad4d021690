import ContainerdAPI

/// Turns the guest's cgroup v2 files, as `name value` lines, into containerd's v2 Metrics.
enum CgroupMetrics {
    static func parse(_ text: String) -> Io_Containerd_Cgroups_V2_Metrics {
        var metrics = Io_Containerd_Cgroups_V2_Metrics()
        var memory = Io_Containerd_Cgroups_V2_MemoryStat()
        var cpu = Io_Containerd_Cgroups_V2_CPUStat()
        var pids = Io_Containerd_Cgroups_V2_PidsStat()
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 2 else { continue }
            let value = UInt64(fields.last ?? "") ?? 0
            switch (fields[0], fields.count) {
            case ("memory.current", _): memory.usage = value
            case ("memory.max", _): memory.usageLimit = fields[1] == "max" ? UInt64.max : value
            case ("pids.current", _): pids.current = value
            case ("pids.max", _): pids.limit = fields[1] == "max" ? 0 : value
            case ("cpu.stat", 3):
                switch fields[1] {
                case "usage_usec": cpu.usageUsec = value
                case "user_usec": cpu.userUsec = value
                case "system_usec": cpu.systemUsec = value
                case "nr_periods": cpu.nrPeriods = value
                case "nr_throttled": cpu.nrThrottled = value
                case "throttled_usec": cpu.throttledUsec = value
                default: break
                }
            case ("memory.stat", 3):
                switch fields[1] {
                case "anon": memory.anon = value
                case "file": memory.file = value
                case "kernel_stack": memory.kernelStack = value
                case "slab": memory.slab = value
                case "sock": memory.sock = value
                case "shmem": memory.shmem = value
                case "file_mapped": memory.fileMapped = value
                case "file_dirty": memory.fileDirty = value
                case "pgfault": memory.pgfault = value
                case "pgmajfault": memory.pgmajfault = value
                default: break
                }
            default: break
            }
        }
        metrics.memory = memory
        metrics.cpu = cpu
        metrics.pids = pids
        return metrics
    }
}
