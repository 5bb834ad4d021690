// The values scripts/gen-golden/main.go sets in the golden files, as Swift values: the
// fixtures GoldenBytesTests expects each decoded message to equal. Keep them in step with
// main.go.

import Foundation
import SwiftProtobuf

import ContainerdAPI

// MARK: - The values gen-golden sets

/// 2024-03-05T06:07:08.123456789Z, every exited_at in the golden files.
let exitedAt = Google_Protobuf_Timestamp(seconds: 1_709_618_828, nanos: 123_456_789)
/// The envelopes' publish time.
let published = Google_Protobuf_Timestamp(seconds: 1_709_618_829, nanos: 987_654_321)
/// 2^48: the uint64 values are base plus a small number, so they need 64-bit fields.
let base: UInt64 = 0x1_0000_0000_0000

func mounts() -> [Containerd_Types_Mount] {
    [
        .with {
            $0.type = "overlay"
            $0.source = "overlay"
            $0.target = "/rootfs"
            $0.options = ["lowerdir=/l1:/l2", "upperdir=/u", "workdir=/w"]
        },
        .with {
            $0.type = "bind"
            $0.source = "/host/data"
            $0.target = "/data"
            $0.options = ["rbind", "ro"]
        },
    ]
}

func taskExit() -> Containerd_Events_TaskExit {
    .with {
        $0.containerID = "exit-container"
        $0.id = "exit-exec"
        $0.pid = 4_000_000_303
        $0.exitStatus = 137
        $0.exitedAt = exitedAt
    }
}

func cgroupsV1Metrics() -> Io_Containerd_Cgroups_V1_Metrics {
    func n(_ field: UInt64) -> UInt64 { base + 100 + field }
    func entry(_ k: UInt64) -> Io_Containerd_Cgroups_V1_MemoryEntry {
        .with {
            $0.limit = base + k * 10 + 1
            $0.usage = base + k * 10 + 2
            $0.max = base + k * 10 + 3
            $0.failcnt = base + k * 10 + 4
        }
    }
    func blk(_ k: UInt64, _ op: String) -> [Io_Containerd_Cgroups_V1_BlkIOEntry] {
        let letter = Character(Unicode.Scalar(UInt8(ascii: "a") + UInt8(k)))
        return [
            .with {
                $0.op = op
                $0.device = "/dev/vd\(letter)"
                $0.major = 253
                $0.minor = k
                $0.value = base + 1000 + k
            },
            .with {
                $0.op = "Total"
                $0.major = 8
                $0.minor = 16 + k
                $0.value = base + 2000 + k
            },
        ]
    }
    return .with {
        $0.hugetlb = [
            .with { $0.usage = base + 11; $0.max = base + 12; $0.failcnt = 13; $0.pagesize = "2MB" },
            .with { $0.usage = base + 21; $0.max = base + 22; $0.failcnt = 23; $0.pagesize = "1GB" },
        ]
        $0.pids = .with { $0.current = 42; $0.limit = base + 4096 }
        $0.cpu = .with {
            $0.usage = .with {
                $0.total = base + 31
                $0.kernel = base + 32
                $0.user = base + 33
                $0.perCpu = [base + 341, base + 342, 0, 7]
            }
            $0.throttling = .with {
                $0.periods = base + 51
                $0.throttledPeriods = base + 52
                $0.throttledTime = base + 53
            }
        }
        $0.memory = .with {
            $0.cache = n(1); $0.rss = n(2); $0.rssHuge = n(3); $0.mappedFile = n(4)
            $0.dirty = n(5); $0.writeback = n(6); $0.pgPgIn = n(7); $0.pgPgOut = n(8)
            $0.pgFault = n(9); $0.pgMajFault = n(10); $0.inactiveAnon = n(11); $0.activeAnon = n(12)
            $0.inactiveFile = n(13); $0.activeFile = n(14); $0.unevictable = n(15)
            $0.hierarchicalMemoryLimit = n(16); $0.hierarchicalSwapLimit = n(17)
            $0.totalCache = n(18); $0.totalRss = n(19); $0.totalRssHuge = n(20)
            $0.totalMappedFile = n(21); $0.totalDirty = n(22); $0.totalWriteback = n(23)
            $0.totalPgPgIn = n(24); $0.totalPgPgOut = n(25); $0.totalPgFault = n(26)
            $0.totalPgMajFault = n(27); $0.totalInactiveAnon = n(28); $0.totalActiveAnon = n(29)
            $0.totalInactiveFile = n(30); $0.totalActiveFile = n(31); $0.totalUnevictable = n(32)
            $0.usage = entry(33); $0.swap = entry(34); $0.kernel = entry(35); $0.kernelTcp = entry(36)
        }
        $0.blkio = .with {
            $0.ioServiceBytesRecursive = blk(1, "Read")
            $0.ioServicedRecursive = blk(2, "Write")
            $0.ioQueuedRecursive = blk(3, "Sync")
            $0.ioServiceTimeRecursive = blk(4, "Async")
            $0.ioWaitTimeRecursive = blk(5, "Discard")
            $0.ioMergedRecursive = blk(6, "Read")
            $0.ioTimeRecursive = blk(7, "Write")
            $0.sectorsRecursive = blk(8, "Sync")
        }
        $0.rdma = .with {
            $0.current = [.with { $0.device = "mlx5_0"; $0.hcaHandles = 3; $0.hcaObjects = 4_000_000_001 }]
            $0.limit = [.with { $0.device = "mlx5_0"; $0.hcaHandles = 4_000_000_002; $0.hcaObjects = 4_000_000_003 }]
        }
        $0.network = [
            .with {
                $0.name = "eth0"
                $0.rxBytes = base + 72; $0.rxPackets = base + 73; $0.rxErrors = 74; $0.rxDropped = 75
                $0.txBytes = base + 76; $0.txPackets = base + 77; $0.txErrors = 78; $0.txDropped = 79
            },
            .with { $0.name = "eth1"; $0.rxBytes = 1 },
        ]
        $0.cgroupStats = .with {
            $0.nrSleeping = 81; $0.nrRunning = 82; $0.nrStopped = 83; $0.nrUninterruptible = 84; $0.nrIoWait = 85
        }
        $0.memoryOomControl = .with { $0.oomKillDisable = 1; $0.underOom = 92; $0.oomKill = base + 93 }
    }
}

func cgroupsV2Metrics() -> Io_Containerd_Cgroups_V2_Metrics {
    func n(_ field: UInt64) -> UInt64 { base + 200 + field }
    return .with {
        $0.pids = .with { $0.current = 17; $0.limit = base + 12 }
        $0.cpu = .with {
            $0.usageUsec = base + 21; $0.userUsec = base + 22; $0.systemUsec = base + 23
            $0.nrPeriods = base + 24; $0.nrThrottled = base + 25; $0.throttledUsec = base + 26
        }
        $0.memory = .with {
            $0.anon = n(1); $0.file = n(2); $0.kernelStack = n(3); $0.slab = n(4); $0.sock = n(5)
            $0.shmem = n(6); $0.fileMapped = n(7); $0.fileDirty = n(8); $0.fileWriteback = n(9)
            $0.anonThp = n(10); $0.inactiveAnon = n(11); $0.activeAnon = n(12); $0.inactiveFile = n(13)
            $0.activeFile = n(14); $0.unevictable = n(15); $0.slabReclaimable = n(16)
            $0.slabUnreclaimable = n(17); $0.pgfault = n(18); $0.pgmajfault = n(19)
            $0.workingsetRefault = n(20); $0.workingsetActivate = n(21); $0.workingsetNodereclaim = n(22)
            $0.pgrefill = n(23); $0.pgscan = n(24); $0.pgsteal = n(25); $0.pgactivate = n(26)
            $0.pgdeactivate = n(27); $0.pglazyfree = n(28); $0.pglazyfreed = n(29)
            $0.thpFaultAlloc = n(30); $0.thpCollapseAlloc = n(31); $0.usage = n(32)
            $0.usageLimit = n(33); $0.swapUsage = n(34); $0.swapLimit = n(35)
        }
        $0.rdma = .with {
            $0.current = [.with { $0.device = "mlx5_1"; $0.hcaHandles = 51; $0.hcaObjects = 4_000_000_052 }]
            $0.limit = [.with { $0.device = "mlx5_1"; $0.hcaHandles = 4_000_000_053; $0.hcaObjects = 54 }]
        }
        $0.io = .with {
            $0.usage = [
                .with { $0.major = 253; $0.minor = 0; $0.rbytes = base + 63; $0.wbytes = base + 64; $0.rios = base + 65; $0.wios = base + 66 },
                .with { $0.major = 8; $0.minor = 16; $0.rbytes = 1; $0.wbytes = 2; $0.rios = 3; $0.wios = 4 },
            ]
        }
        $0.hugetlb = [
            .with { $0.current = base + 71; $0.max = base + 72; $0.pagesize = "2MB" },
            .with { $0.max = base + 73; $0.pagesize = "1GB" },
        ]
        $0.memoryEvents = .with { $0.low = 81; $0.high = 82; $0.max = base + 83; $0.oom = 84; $0.oomKill = 85 }
    }
}
