#define _GNU_SOURCE
#include "CSkiffSpawn.h"
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int skiff_seccomp_allow_list(const char *const *names, int count, struct sock_filter **program,
                             unsigned short *length, int *unknown) {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (ctx == NULL) return -ENOMEM;
    int rc = 0;
    for (int i = 0; i < count && rc == 0; i++) {
        int nr = seccomp_syscall_resolve_name(names[i]);
        if (nr == __NR_SCMP_ERROR) {
            if (unknown) *unknown = i;
            rc = -EINVAL;
        } else {
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
        }
    }
    int fd = -1;
    if (rc == 0) {
        fd = memfd_create("skiff-seccomp", MFD_CLOEXEC);
        if (fd < 0) rc = -errno;
    }
    if (rc == 0) rc = seccomp_export_bpf(ctx, fd);
    seccomp_release(ctx);
    if (rc != 0) {
        if (fd >= 0) close(fd);
        return rc;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size <= 0 || st.st_size % sizeof(struct sock_filter) != 0 ||
        st.st_size / sizeof(struct sock_filter) > 0xffff) {
        close(fd);
        return -EINVAL;
    }
    struct sock_filter *filter = malloc(st.st_size);
    if (filter == NULL) {
        close(fd);
        return -ENOMEM;
    }
    ssize_t n = pread(fd, filter, st.st_size, 0);
    close(fd);
    if (n != st.st_size) {
        free(filter);
        return -EIO;
    }
    *program = filter;
    *length = (unsigned short)(st.st_size / sizeof(struct sock_filter));
    return 0;
}

// The child's helpers: async-signal-safe system calls and plain loops only (no malloc, no stdio).

/// Writes "skiff-spawn: STEP: errno N" to descriptor 2 and exits 127.
static void fail(const char *step) {
    int saved = errno;
    char line[160];
    size_t n = 0;
    const char *parts[] = {"skiff-spawn: ", step, ": errno "};
    for (int p = 0; p < 3; p++)
        for (const char *c = parts[p]; *c && n < sizeof line - 16; c++) line[n++] = *c;
    char digits[12];
    int d = 0;
    unsigned value = saved < 0 ? 0 : (unsigned)saved;
    do { digits[d++] = (char)('0' + value % 10); value /= 10; } while (value && d < 11);
    while (d) line[n++] = digits[--d];
    line[n++] = '\n';
    ssize_t ignored = write(2, line, n);
    (void)ignored;
    _exit(127);
}

/// `root` followed by `path` into `out` (PATH_MAX bytes); 0, or -1 when it does not fit.
static int join(char *out, const char *root, const char *path) {
    size_t n = 0;
    for (const char *c = root; *c; c++) { if (n >= 4095) return -1; out[n++] = *c; }
    for (const char *c = path; *c; c++) { if (n >= 4095) return -1; out[n++] = *c; }
    out[n] = 0;
    return 0;
}

/// Makes every directory of `path` up to (not including) its last component, or all of it
/// when `whole`.
static int make_parents(char *path, int whole) {
    size_t length = strlen(path);
    for (size_t i = 1; i <= length; i++) {
        if (path[i] != '/' && path[i] != 0) continue;
        if (path[i] == 0 && !whole) break;
        char saved = path[i];
        path[i] = 0;
        int rc = mkdir(path, 0755);
        path[i] = saved;
        if (rc != 0 && errno != EEXIST) return -1;
    }
    return 0;
}

static void confine(const struct skiff_confinement *c) {
    char target[4096];
    if (unshare(CLONE_NEWNS) != 0) fail("unshare(CLONE_NEWNS)");
    // Host mounts (a share bound after QEMU started) reach this namespace; its own never leave.
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) != 0) fail("make / a slave");
    if (mount("skiff-qemu-root", c->root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=256k") != 0) fail("mount the root tmpfs");
    for (int i = 0; i < c->mount_count; i++) {
        const struct skiff_mount *m = &c->mounts[i];
        if (join(target, c->root, m->source) != 0) { errno = ENAMETOOLONG; fail(m->source); }
        if (m->flags & SKIFF_MOUNT_PROC) {
            if (make_parents(target, 1) != 0) fail(m->source);
            if (mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) fail("mount proc");
            continue;
        }
        struct stat info;
        if (stat(m->source, &info) != 0) fail(m->source);
        if (S_ISDIR(info.st_mode)) {
            if (make_parents(target, 1) != 0) fail(m->source);
        } else {
            if (make_parents(target, 0) != 0) fail(m->source);
            int fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
            if (fd < 0) fail(m->source);
            close(fd);
        }
        unsigned long bind = MS_BIND | ((m->flags & SKIFF_MOUNT_RECURSIVE) ? MS_REC : 0);
        if (mount(m->source, target, NULL, bind, NULL) != 0) fail(m->source);
        unsigned long flags = MS_BIND | MS_REMOUNT | MS_NOSUID;
        if (!(m->flags & SKIFF_MOUNT_DEVICES)) flags |= MS_NODEV;
        if (m->flags & SKIFF_MOUNT_READ_ONLY) flags |= MS_RDONLY;
        if (mount(NULL, target, NULL, flags, NULL) != 0) fail(m->source);
    }
    for (int i = 0; i + 1 < c->link_count * 2; i += 2) {
        if (join(target, c->root, c->links[i]) != 0 || make_parents(target, 0) != 0) fail(c->links[i]);
        if (symlink(c->links[i + 1], target) != 0) fail(c->links[i]);
    }
    if (mount(NULL, c->root, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "mode=0755") != 0) fail("make the root read-only");
    // The new root becomes / and the host's is let go (pivot_root(2): new and old root the same).
    if (chdir(c->root) != 0) fail("chdir to the new root");
    if (syscall(SYS_pivot_root, ".", ".") != 0) fail("pivot_root");
    if (umount2(".", MNT_DETACH) != 0) fail("detach the host's root");
    if (chdir("/") != 0) fail("chdir /");
    // As much locked memory as this process may give (unlimited needs CAP_SYS_RESOURCE, which
    // a containerized host may not have; then the hard limit).
    struct rlimit unlimited = {RLIM_INFINITY, RLIM_INFINITY}, current;
    if (setrlimit(RLIMIT_MEMLOCK, &unlimited) != 0 && getrlimit(RLIMIT_MEMLOCK, &current) == 0) {
        current.rlim_cur = current.rlim_max;
        setrlimit(RLIMIT_MEMLOCK, &current);
    }
    for (int cap = 0; cap < 64; cap++) {
        if (c->capabilities & (1ULL << cap)) continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) fail("PR_CAPBSET_DROP");
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) fail("clear ambient capabilities");
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    for (int i = 0; i < 2; i++) {
        __u32 kept = (__u32)(c->capabilities >> (32 * i));
        data[i].effective = kept;
        data[i].permitted = kept;
        data[i].inheritable = kept;
    }
    if (syscall(SYS_capset, &header, data) != 0) fail("capset");
}

pid_t skiff_spawn_filtered(const char *path, char *const argv[], char *const envp[], int output_fd,
                           const struct sock_filter *program, unsigned short length,
                           const struct skiff_confinement *confinement) {
    struct sock_fprog fprog = {.len = length, .filter = (struct sock_filter *)program};
    sigset_t all, old;
    sigfillset(&all);
    // No signal handler of the parent's may run in the child before its signals are reset.
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid != 0) {
        int saved = errno;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return pid < 0 ? -saved : pid;
    }
    // The child: async-signal-safe calls only.
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        signal(sig, SIG_DFL);
    }
    if (dup2(output_fd, 2) < 0) _exit(127);
    if (setsid() < 0) fail("setsid");
    int in = open("/dev/null", O_RDONLY);
    if (in < 0 || dup2(in, 0) < 0 || dup2(output_fd, 1) < 0) fail("stdio");
    if (syscall(SYS_close_range, 3, ~0U, 0) != 0) fail("close_range");
    if (confinement) confine(confinement);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("PR_SET_NO_NEW_PRIVS");
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0) fail("seccomp");
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(path, argv, envp);
    fail(path);
    return -1;
}
