// ContainerdAPI: Swift types for containerd's wire messages, generated from proto/containerd
// (the task v2 service, task events, the ttrpc events service, mounts, cgroup metrics) by
// scripts/gen-proto. Field numbers and package names match containerd 1.6, so the bytes and
// the Any type URLs are the ones containerd sends and expects.
