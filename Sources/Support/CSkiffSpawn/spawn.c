#define _GNU_SOURCE
#include "CSkiffSpawn.h"
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
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

pid_t skiff_spawn_filtered(const char *path, char *const argv[], char *const envp[], int output_fd,
                           const struct sock_filter *program, unsigned short length) {
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
    if (setsid() < 0) _exit(127);
    int in = open("/dev/null", O_RDONLY);
    if (in < 0 || dup2(in, 0) < 0 || dup2(output_fd, 1) < 0 || dup2(output_fd, 2) < 0) _exit(127);
    if (syscall(SYS_close_range, 3, ~0U, 0) != 0) _exit(127);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(127);
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(path, argv, envp);
    _exit(127);
}
