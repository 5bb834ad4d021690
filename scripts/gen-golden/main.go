// Command gen-golden writes containerd's own encoding of the messages Skiff exchanges with
// it: each message is built from containerd's Go types (the Debian 1.6 sources, gogo
// protobuf) with distinctive non-zero values and marshalled to <dir>/<Name>.bin.
// Tests/ContainerdAPITests/GoldenBytesTests.swift decodes these files with the Swift types
// generated from proto/containerd and expects exactly the values set here, so any field
// number, type or package mismatch in our .proto files shows up as a failing test.
//
// Build and run it with scripts/gen-golden/run; the .bin files are committed, so the Swift
// tests never need Go.
//
// Conventions (mirrored in the Swift test): strings name their field ("create-stdin"),
// uint32 values have the top bit set (5-byte varints), uint64 values exceed 2^32 and
// encode the field number in the low digits, every timestamp has nanoseconds.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	v1 "github.com/containerd/cgroups/stats/v1"
	v2 "github.com/containerd/cgroups/v2/stats"
	"github.com/containerd/containerd/api/events"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/runtime/v2/task"
	"github.com/containerd/typeurl"
	"github.com/gogo/protobuf/proto"
	gogotypes "github.com/gogo/protobuf/types"
)

// Timestamps used throughout; the Swift test uses the same seconds and nanos.
var (
	exitedAt  = time.Unix(1709618828, 123456789).UTC() // 2024-03-05T06:07:08.123456789Z
	published = time.Unix(1709618829, 987654321).UTC()
)

// Base of the uint64 values: field n of a message gets base+n (or a multiple of it).
const base uint64 = 0x1_0000_0000_0000 // 2^48

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen-golden:", err)
		os.Exit(1)
	}
}

// marshal encodes m as containerd does. gogo's generated marshalers write map entries in Go's
// random map order (and refuse proto.Buffer's deterministic mode), so for UpdateTaskRequest,
// the one message here with a map, the entries are appended one by one in key order: the
// result is one of the encodings containerd itself produces, and reruns write the same bytes.
func marshal(m proto.Message) []byte {
	req, ok := m.(*task.UpdateTaskRequest)
	if !ok {
		data, err := proto.Marshal(m)
		must(err)
		return data
	}
	rest := *req
	rest.Annotations = nil
	data, err := proto.Marshal(&rest)
	must(err)
	keys := make([]string, 0, len(req.Annotations))
	for k := range req.Annotations {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		entry, err := proto.Marshal(&task.UpdateTaskRequest{Annotations: map[string]string{k: req.Annotations[k]}})
		must(err)
		data = append(data, entry...)
	}
	return data
}

func marshalAny(v interface{}) *gogotypes.Any {
	a, err := typeurl.MarshalAny(v)
	must(err)
	return a
}

func mounts() []*types.Mount {
	return []*types.Mount{
		{
			Type:    "overlay",
			Source:  "overlay",
			Target:  "/rootfs",
			Options: []string{"lowerdir=/l1:/l2", "upperdir=/u", "workdir=/w"},
		},
		{
			Type:    "bind",
			Source:  "/host/data",
			Target:  "/data",
			Options: []string{"rbind", "ro"},
		},
	}
}

func v1Metrics() *v1.Metrics {
	n := func(field uint64) uint64 { return base + 100 + field } // MemoryStat fields
	entry := func(k uint64) *v1.MemoryEntry {
		return &v1.MemoryEntry{Limit: base + k*10 + 1, Usage: base + k*10 + 2, Max: base + k*10 + 3, Failcnt: base + k*10 + 4}
	}
	blk := func(k uint64, op string) []*v1.BlkIOEntry {
		return []*v1.BlkIOEntry{
			{Op: op, Device: fmt.Sprintf("/dev/vd%c", 'a'+rune(k)), Major: 253, Minor: k, Value: base + 1000 + k},
			{Op: "Total", Device: "", Major: 8, Minor: 16 + k, Value: base + 2000 + k},
		}
	}
	return &v1.Metrics{
		Hugetlb: []*v1.HugetlbStat{
			{Usage: base + 11, Max: base + 12, Failcnt: 13, Pagesize: "2MB"},
			{Usage: base + 21, Max: base + 22, Failcnt: 23, Pagesize: "1GB"},
		},
		Pids: &v1.PidsStat{Current: 42, Limit: base + 4096},
		CPU: &v1.CPUStat{
			Usage:      &v1.CPUUsage{Total: base + 31, Kernel: base + 32, User: base + 33, PerCPU: []uint64{base + 341, base + 342, 0, 7}},
			Throttling: &v1.Throttle{Periods: base + 51, ThrottledPeriods: base + 52, ThrottledTime: base + 53},
		},
		Memory: &v1.MemoryStat{
			Cache: n(1), RSS: n(2), RSSHuge: n(3), MappedFile: n(4), Dirty: n(5), Writeback: n(6),
			PgPgIn: n(7), PgPgOut: n(8), PgFault: n(9), PgMajFault: n(10), InactiveAnon: n(11),
			ActiveAnon: n(12), InactiveFile: n(13), ActiveFile: n(14), Unevictable: n(15),
			HierarchicalMemoryLimit: n(16), HierarchicalSwapLimit: n(17), TotalCache: n(18),
			TotalRSS: n(19), TotalRSSHuge: n(20), TotalMappedFile: n(21), TotalDirty: n(22),
			TotalWriteback: n(23), TotalPgPgIn: n(24), TotalPgPgOut: n(25), TotalPgFault: n(26),
			TotalPgMajFault: n(27), TotalInactiveAnon: n(28), TotalActiveAnon: n(29),
			TotalInactiveFile: n(30), TotalActiveFile: n(31), TotalUnevictable: n(32),
			Usage: entry(33), Swap: entry(34), Kernel: entry(35), KernelTCP: entry(36),
		},
		Blkio: &v1.BlkIOStat{
			IoServiceBytesRecursive: blk(1, "Read"),
			IoServicedRecursive:     blk(2, "Write"),
			IoQueuedRecursive:       blk(3, "Sync"),
			IoServiceTimeRecursive:  blk(4, "Async"),
			IoWaitTimeRecursive:     blk(5, "Discard"),
			IoMergedRecursive:       blk(6, "Read"),
			IoTimeRecursive:         blk(7, "Write"),
			SectorsRecursive:        blk(8, "Sync"),
		},
		Rdma: &v1.RdmaStat{
			Current: []*v1.RdmaEntry{{Device: "mlx5_0", HcaHandles: 3, HcaObjects: 4000000001}},
			Limit:   []*v1.RdmaEntry{{Device: "mlx5_0", HcaHandles: 4000000002, HcaObjects: 4000000003}},
		},
		Network: []*v1.NetworkStat{
			{Name: "eth0", RxBytes: base + 72, RxPackets: base + 73, RxErrors: 74, RxDropped: 75, TxBytes: base + 76, TxPackets: base + 77, TxErrors: 78, TxDropped: 79},
			{Name: "eth1", RxBytes: 1},
		},
		CgroupStats:      &v1.CgroupStats{NrSleeping: 81, NrRunning: 82, NrStopped: 83, NrUninterruptible: 84, NrIoWait: 85},
		MemoryOomControl: &v1.MemoryOomControl{OomKillDisable: 1, UnderOom: 92, OomKill: base + 93},
	}
}

func v2Metrics() *v2.Metrics {
	n := func(field uint64) uint64 { return base + 200 + field } // MemoryStat fields
	return &v2.Metrics{
		Pids: &v2.PidsStat{Current: 17, Limit: base + 12},
		CPU: &v2.CPUStat{
			UsageUsec: base + 21, UserUsec: base + 22, SystemUsec: base + 23,
			NrPeriods: base + 24, NrThrottled: base + 25, ThrottledUsec: base + 26,
		},
		Memory: &v2.MemoryStat{
			Anon: n(1), File: n(2), KernelStack: n(3), Slab: n(4), Sock: n(5), Shmem: n(6),
			FileMapped: n(7), FileDirty: n(8), FileWriteback: n(9), AnonThp: n(10),
			InactiveAnon: n(11), ActiveAnon: n(12), InactiveFile: n(13), ActiveFile: n(14),
			Unevictable: n(15), SlabReclaimable: n(16), SlabUnreclaimable: n(17), Pgfault: n(18),
			Pgmajfault: n(19), WorkingsetRefault: n(20), WorkingsetActivate: n(21),
			WorkingsetNodereclaim: n(22), Pgrefill: n(23), Pgscan: n(24), Pgsteal: n(25),
			Pgactivate: n(26), Pgdeactivate: n(27), Pglazyfree: n(28), Pglazyfreed: n(29),
			ThpFaultAlloc: n(30), ThpCollapseAlloc: n(31), Usage: n(32), UsageLimit: n(33),
			SwapUsage: n(34), SwapLimit: n(35),
		},
		Rdma: &v2.RdmaStat{
			Current: []*v2.RdmaEntry{{Device: "mlx5_1", HcaHandles: 51, HcaObjects: 4000000052}},
			Limit:   []*v2.RdmaEntry{{Device: "mlx5_1", HcaHandles: 4000000053, HcaObjects: 54}},
		},
		Io: &v2.IOStat{Usage: []*v2.IOEntry{
			{Major: 253, Minor: 0, Rbytes: base + 63, Wbytes: base + 64, Rios: base + 65, Wios: base + 66},
			{Major: 8, Minor: 16, Rbytes: 1, Wbytes: 2, Rios: 3, Wios: 4},
		}},
		Hugetlb: []*v2.HugeTlbStat{
			{Current: base + 71, Max: base + 72, Pagesize: "2MB"},
			{Current: 0, Max: base + 73, Pagesize: "1GB"},
		},
		MemoryEvents: &v2.MemoryEvents{Low: 81, High: 82, Max: base + 83, Oom: 84, OomKill: 85},
	}
}

func taskExit() *events.TaskExit {
	return &events.TaskExit{
		ContainerID: "exit-container",
		ID:          "exit-exec",
		Pid:         4000000303,
		ExitStatus:  137,
		ExitedAt:    exitedAt,
	}
}

func envelope() *eventsapi.Envelope {
	return &eventsapi.Envelope{
		Timestamp: published,
		Namespace: "k8s.io",
		Topic:     "/tasks/exit",
		Event:     marshalAny(taskExit()),
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gen-golden OUTPUT_DIR")
		os.Exit(2)
	}
	dir := os.Args[1]
	must(os.MkdirAll(dir, 0o755))

	messages := []struct {
		name string
		msg  proto.Message
	}{
		// containerd.task.v2 (runtime/v2/task/shim.proto)
		{"CreateTaskRequest", &task.CreateTaskRequest{
			ID:               "create-id",
			Bundle:           "/run/containerd/io.containerd.runtime.v2.task/k8s.io/create-id",
			Rootfs:           mounts(),
			Terminal:         true,
			Stdin:            "/run/fifo/create-stdin",
			Stdout:           "/run/fifo/create-stdout",
			Stderr:           "/run/fifo/create-stderr",
			Checkpoint:       "/var/checkpoint/create",
			ParentCheckpoint: "/var/checkpoint/parent",
			Options:          &gogotypes.Any{TypeUrl: "containerd.runc.v1.Options", Value: []byte{0x0a, 0x04, 'r', 'u', 'n', 'c', 0x50, 0x01}},
		}},
		{"CreateTaskResponse", &task.CreateTaskResponse{Pid: 4000000001}},
		{"StateRequest", &task.StateRequest{ID: "state-id", ExecID: "state-exec"}},
		{"StateResponse", &task.StateResponse{
			ID:         "state-id",
			Bundle:     "/bundles/state",
			Pid:        4000000002,
			Status:     tasktypes.StatusPausing,
			Stdin:      "state-stdin",
			Stdout:     "state-stdout",
			Stderr:     "state-stderr",
			Terminal:   true,
			ExitStatus: 4000000003,
			ExitedAt:   exitedAt,
			ExecID:     "state-exec",
		}},
		{"StartRequest", &task.StartRequest{ID: "start-id", ExecID: "start-exec"}},
		{"StartResponse", &task.StartResponse{Pid: 4000000004}},
		{"DeleteRequest", &task.DeleteRequest{ID: "delete-id", ExecID: "delete-exec"}},
		{"DeleteResponse", &task.DeleteResponse{Pid: 4000000005, ExitStatus: 255, ExitedAt: exitedAt}},
		{"ExecProcessRequest", &task.ExecProcessRequest{
			ID:       "exec-id",
			ExecID:   "exec-exec",
			Terminal: true,
			Stdin:    "exec-stdin",
			Stdout:   "exec-stdout",
			Stderr:   "exec-stderr",
			Spec: &gogotypes.Any{
				TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process",
				Value:   []byte(`{"args":["/bin/sh","-c","echo hi"],"cwd":"/"}`),
			},
		}},
		{"ResizePtyRequest", &task.ResizePtyRequest{ID: "resize-id", ExecID: "resize-exec", Width: 4000000006, Height: 4000000007}},
		{"KillRequest", &task.KillRequest{ID: "kill-id", ExecID: "kill-exec", Signal: 4000000009, All: true}},
		{"CloseIORequest", &task.CloseIORequest{ID: "closeio-id", ExecID: "closeio-exec", Stdin: true}},
		{"PidsRequest", &task.PidsRequest{ID: "pids-id"}},
		{"PidsResponse", &task.PidsResponse{Processes: []*tasktypes.ProcessInfo{
			{Pid: 4000000010, Info: &gogotypes.Any{TypeUrl: "containerd.runc.v1.ProcessDetails", Value: []byte{0x0a, 0x06, 'e', 'x', 'e', 'c', '-', '7'}}},
			{Pid: 11},
		}}},
		{"CheckpointTaskRequest", &task.CheckpointTaskRequest{
			ID:      "checkpoint-id",
			Path:    "/var/checkpoint/out",
			Options: &gogotypes.Any{TypeUrl: "containerd.runc.v1.CheckpointOptions", Value: []byte{0x08, 0x01}},
		}},
		{"UpdateTaskRequest", &task.UpdateTaskRequest{
			ID: "update-id",
			Resources: &gogotypes.Any{
				TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
				Value:   []byte(`{"memory":{"limit":268435456}}`),
			},
			Annotations: map[string]string{
				"io.kubernetes.cri.sandbox-id": "sandbox-1234",
				"skiff.example/one":            "1",
				"z-last":                       "",
			},
		}},
		{"WaitRequest", &task.WaitRequest{ID: "wait-id", ExecID: "wait-exec"}},
		{"WaitResponse", &task.WaitResponse{ExitStatus: 4000000012, ExitedAt: exitedAt}},
		{"StatsRequest", &task.StatsRequest{ID: "stats-id"}},
		{"StatsResponse", &task.StatsResponse{Stats: marshalAny(v2Metrics())}},
		{"ConnectRequest", &task.ConnectRequest{ID: "connect-id"}},
		{"ConnectResponse", &task.ConnectResponse{ShimPid: 4000000013, TaskPid: 4000000014, Version: "skiff-golden-1"}},
		{"ShutdownRequest", &task.ShutdownRequest{ID: "shutdown-id", Now: true}},
		{"PauseRequest", &task.PauseRequest{ID: "pause-id"}},
		{"ResumeRequest", &task.ResumeRequest{ID: "resume-id"}},

		// containerd.types and containerd.v1.types
		{"Mount", mounts()[0]},
		{"Process", &tasktypes.Process{
			ContainerID: "process-container",
			ID:          "process-id",
			Pid:         4000000015,
			Status:      tasktypes.StatusStopped,
			Stdin:       "process-stdin",
			Stdout:      "process-stdout",
			Stderr:      "process-stderr",
			Terminal:    true,
			ExitStatus:  4000000016,
			ExitedAt:    exitedAt,
		}},

		// containerd.events (api/events/task.proto)
		{"TaskCreate", &events.TaskCreate{
			ContainerID: "create-container",
			Bundle:      "/bundles/create",
			Rootfs:      mounts(),
			IO:          &events.TaskIO{Stdin: "event-stdin", Stdout: "event-stdout", Stderr: "event-stderr", Terminal: true},
			Checkpoint:  "/var/checkpoint/event",
			Pid:         4000000301,
		}},
		{"TaskStart", &events.TaskStart{ContainerID: "start-container", Pid: 4000000302}},
		{"TaskExit", taskExit()},
		{"TaskDelete", &events.TaskDelete{
			ContainerID: "delete-container",
			Pid:         4000000304,
			ExitStatus:  4000000305,
			ExitedAt:    exitedAt,
			ID:          "delete-exec",
		}},
		{"TaskExecAdded", &events.TaskExecAdded{ContainerID: "added-container", ExecID: "added-exec"}},
		{"TaskExecStarted", &events.TaskExecStarted{ContainerID: "started-container", ExecID: "started-exec", Pid: 4000000306}},
		{"TaskOOM", &events.TaskOOM{ContainerID: "oom-container"}},
		{"TaskPaused", &events.TaskPaused{ContainerID: "paused-container"}},
		{"TaskResumed", &events.TaskResumed{ContainerID: "resumed-container"}},
		{"TaskCheckpointed", &events.TaskCheckpointed{ContainerID: "checkpointed-container", Checkpoint: "/var/checkpoint/event"}},

		// containerd.services.events.ttrpc.v1
		{"Envelope", envelope()},
		{"ForwardRequest", &eventsapi.ForwardRequest{Envelope: envelope()}},

		// io.containerd.cgroups.v1 and .v2
		{"CgroupsV1Metrics", v1Metrics()},
		{"CgroupsV2Metrics", v2Metrics()},
	}

	for _, m := range messages {
		data := marshal(m.msg)
		path := filepath.Join(dir, m.name+".bin")
		must(os.WriteFile(path, data, 0o644))
		fmt.Printf("%-24s %5d bytes  %s\n", m.name, len(data), proto.MessageName(m.msg))
	}
}
