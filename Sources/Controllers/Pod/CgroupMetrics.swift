import AgentAPI
import ContainerdAPI

/// The agent's cgroup v2 figures as containerd's v2 Metrics (what `ctr task metrics` shows).
enum CgroupMetrics {
    static func metrics(_ stats: Skiff_Agent_V1_ContainerStatsResponse) -> Io_Containerd_Cgroups_V2_Metrics {
        .with {
            $0.memory = .with {
                $0.usage = stats.memoryUsageBytes
                // containerd's v2 metrics give an unlimited cgroup the largest value.
                $0.usageLimit = stats.memoryLimitBytes == 0 ? UInt64.max : stats.memoryLimitBytes
                $0.anon = stats.memoryAnon
                $0.file = stats.memoryFile
                $0.kernelStack = stats.memoryKernelStack
                $0.slab = stats.memorySlab
                $0.sock = stats.memorySock
                $0.shmem = stats.memoryShmem
                $0.fileMapped = stats.memoryFileMapped
                $0.fileDirty = stats.memoryFileDirty
                $0.pgfault = stats.memoryPgfault
                $0.pgmajfault = stats.memoryPgmajfault
            }
            $0.memoryEvents = .with {
                $0.oom = stats.memoryOom
                $0.oomKill = stats.memoryOomKill
            }
            $0.cpu = .with {
                $0.usageUsec = stats.cpuUsageUsec
                $0.userUsec = stats.cpuUserUsec
                $0.systemUsec = stats.cpuSystemUsec
                $0.nrPeriods = stats.cpuNrPeriods
                $0.nrThrottled = stats.cpuNrThrottled
                $0.throttledUsec = stats.cpuThrottledUsec
            }
            $0.pids = .with {
                $0.current = stats.pidsCurrent
                $0.limit = stats.pidsLimit
            }
        }
    }
}
