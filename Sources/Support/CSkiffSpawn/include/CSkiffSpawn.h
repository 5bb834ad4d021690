#ifndef CSKIFFSPAWN_H
#define CSKIFFSPAWN_H
#include <linux/filter.h>
#include <sys/types.h>

/* Starting a process under a seccomp filter of the parent's making (libseccomp, seccomp(2)). */

/// A seccomp program (classic BPF) that allows exactly the system calls named in `names`
/// (`count` of them, x86_64 names as libseccomp knows them) and kills the whole process at
/// any other (SECCOMP_RET_KILL_PROCESS). On success *program is a malloc'd array of *length
/// instructions, which the caller frees; -errno on failure (-EINVAL names an unknown call and
/// sets *unknown to its index).
int skiff_seccomp_allow_list(const char *const *names, int count, struct sock_filter **program,
                             unsigned short *length, int *unknown);

/// One mount of a confined process's root: `source` (an absolute host path) appears at the
/// same path inside it, without the mounts under it unless SKIFF_MOUNT_RECURSIVE. Flags:
/// SKIFF_MOUNT_READ_ONLY, SKIFF_MOUNT_DEVICES (device nodes work: no MS_NODEV),
/// SKIFF_MOUNT_PROC (a fresh procfs at that path rather than a bind), SKIFF_MOUNT_RECURSIVE.
struct skiff_mount {
    const char *source;
    int flags;
};
#define SKIFF_MOUNT_READ_ONLY 1
#define SKIFF_MOUNT_DEVICES 2
#define SKIFF_MOUNT_PROC 4
#define SKIFF_MOUNT_RECURSIVE 8

/// What a confined process sees and may do: a mount namespace of its own (host mounts reach
/// it, as a slave; its own do not leave it) whose root is a fresh read-only tmpfs built on the
/// empty directory `root`, holding only `mounts` (parents before children) and the symbolic
/// links `links` (`link_count` pairs: the link's path, then its target); the capability
/// bounding, permitted, effective and inheritable sets reduced to `capabilities` (bit N is
/// capability N), ambient ones cleared; RLIMIT_MEMLOCK unlimited where this process may raise it,
/// else at its hard limit (VFIO pins guest memory).
struct skiff_confinement {
    const char *root;
    const struct skiff_mount *mounts;
    int mount_count;
    const char *const *links;
    int link_count;
    unsigned long long capabilities;
};

/// Starts `path` with `argv` and `envp` in a new session, stdin from /dev/null and stdout and
/// stderr appended to `output_fd`, every other descriptor closed, signals at their defaults
/// and unmasked, no new privileges (PR_SET_NO_NEW_PRIVS), and `program` (`length`
/// instructions) as its seccomp filter from its very first instruction (execve itself and all
/// the dynamic loader does must be allowed). With `confinement` (may be NULL), the child
/// confines itself so (see skiff_confinement) before the filter. The child runs only
/// async-signal-safe calls before execve; if any step fails it writes one line naming the step
/// and errno to `output_fd` and exits 127. The child's pid, or -errno when fork fails.
pid_t skiff_spawn_filtered(const char *path, char *const argv[], char *const envp[], int output_fd,
                           const struct sock_filter *program, unsigned short length,
                           const struct skiff_confinement *confinement);
#endif
