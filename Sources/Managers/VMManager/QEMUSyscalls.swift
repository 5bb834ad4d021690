/// The system calls QEMU may make, the allow-list the shim puts it under (with
/// `SeccompFilter`) before it execs: any other kills it. QEMU's own `-sandbox` filter stacks
/// on top once it runs (QEMUCommandLine.sandbox), and the kernel applies the stricter answer.
///
/// Where the list comes from: every call `strace -f -c` counted of QEMU 7.2 (TCG) over the
/// VM integration and end-to-end suites (boot, templates made and copied, hot-plugged CPUs,
/// NICs on taps, SCSI disks, VFIO devices, Plan9 shares a container writes through, migration
/// to a descriptor, balloon, panics and kills), and the calls of the same families those
/// paths may take on another day (the `*at` file calls Plan9 serves a guest with, io_uring's
/// enter and register beside its setup, thread signals for vCPU kicks). What is left out is
/// what a VMM never needs: ptrace, mount and namespaces, module and kexec loading, BPF,
/// keyrings, perf, other processes' memory, reboot.
public enum QEMUSyscalls {
    /// The allow-list, by libseccomp's x86_64 names.
    public static let allowed: [String] = [
        // Start (execve, the dynamic loader, glibc's setup) and exit.
        "execve", "arch_prctl", "brk", "access", "readlink", "readlinkat", "set_tid_address", "set_robust_list",
        "get_robust_list", "rseq", "prlimit64", "getrandom", "uname", "sysinfo", "getpid", "gettid", "getppid",
        "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getcwd", "umask", "exit", "exit_group",
        "restart_syscall", "prctl", "seccomp", "capget",
        // Memory, threads and their synchronisation.
        "mmap", "munmap", "mprotect", "mremap", "madvise", "msync", "mincore", "mlock", "munlock", "membarrier",
        "get_mempolicy", "set_mempolicy", "mbind", "memfd_create", "clone", "clone3", "futex", "sched_yield",
        "sched_getaffinity", "sched_getparam", "sched_getscheduler", "getpriority", "getrusage", "times",
        // Signals (vCPU kicks are thread signals) and time.
        "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigtimedwait", "sigaltstack", "tgkill", "tkill", "kill",
        "signalfd4", "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday", "time",
        "timerfd_create", "timerfd_settime", "timerfd_gettime",
        // Event loops.
        "poll", "ppoll", "select", "pselect6", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "eventfd2",
        "pipe2", "io_uring_setup", "io_uring_enter", "io_uring_register", "io_setup", "io_submit", "io_getevents",
        "io_destroy", "io_cancel",
        // Descriptors and I/O: images, logs, the pid file, migration streams.
        "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
        "lseek", "close", "close_range", "dup", "dup2", "dup3", "fcntl", "ioctl", "flock", "fsync", "fdatasync",
        "sync_file_range", "fallocate", "ftruncate", "fadvise64", "sendfile", "splice",
        // Files, as Plan9 (security_model=none) serves them to the guest.
        "openat", "open", "creat", "newfstatat", "fstat", "stat", "lstat", "statx", "statfs", "fstatfs",
        "getdents64", "fchdir", "chdir", "mkdirat", "mkdir", "mknodat", "unlinkat", "unlink", "rmdir", "renameat",
        "renameat2", "rename", "linkat", "link", "symlinkat", "symlink", "fchmod", "fchmodat", "chmod", "fchown",
        "fchownat", "lchown", "chown", "utimensat", "futimesat", "truncate", "fgetxattr", "lgetxattr", "getxattr",
        "fsetxattr", "lsetxattr", "setxattr", "flistxattr", "llistxattr", "listxattr", "fremovexattr",
        "lremovexattr", "removexattr", "name_to_handle_at", "open_by_handle_at",
        // Sockets: QMP, the agent's ports, descriptors passed with getfd.
        "socket", "socketpair", "bind", "listen", "accept", "accept4", "connect", "shutdown", "getsockname",
        "getpeername", "getsockopt", "setsockopt", "sendmsg", "recvmsg", "sendto", "recvfrom",
    ]

    /// The filter built from `allowed`, once per process.
    public static let filter: Result<SeccompFilter, VMManagerError> = {
        Result { () throws(VMManagerError) in try SeccompFilter(allowing: allowed) }
    }()
}
