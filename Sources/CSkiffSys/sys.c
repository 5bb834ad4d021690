#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <errno.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>
#include "CSkiffSys.h"

int skiff_finit_module(int fd, const char *params, int flags) {
    return (int)syscall(SYS_finit_module, fd, params, flags);
}

int skiff_set_window_size(int fd, unsigned short rows, unsigned short cols) {
    struct winsize ws = { .ws_row = rows, .ws_col = cols };
    return ioctl(fd, TIOCSWINSZ, &ws);
}

/* Opens a new pty master (close-on-exec, non-blocking) and names its slave. */
int skiff_open_pty(int *master, char *slave_name, unsigned long slave_name_len) {
    int fd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return -1;
    if (grantpt(fd) < 0 || unlockpt(fd) < 0 || ptsname_r(fd, slave_name, slave_name_len) != 0) {
        close(fd);
        return -1;
    }
    *master = fd;
    return 0;
}

int skiff_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}

int skiff_spawn_addchdir(posix_spawn_file_actions_t *actions, const char *path) {
    return posix_spawn_file_actions_addchdir_np(actions, path);
}

int skiff_spawn_addclosefrom(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}

int skiff_set_thread_idle_priority(void) {
    struct sched_param param = { .sched_priority = 0 };
    return sched_setscheduler(0, SCHED_IDLE, &param);
}

int skiff_sealed_copy(const char *path) {
    int src = open(path, O_RDONLY | O_CLOEXEC);
    if (src < 0) return -errno;
    struct stat st;
    int fd = -1, error = 0;
    if (fstat(src, &st) != 0) { error = errno; goto out; }
    fd = memfd_create("skiff-sealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) { error = errno; goto out; }
    for (off_t offset = 0; offset < st.st_size;) {
        ssize_t n = sendfile(fd, src, &offset, (size_t)(st.st_size - offset));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { error = n < 0 ? errno : EIO; goto out; }
    }
    if (fchmod(fd, st.st_mode & 07777) != 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) != 0) {
        error = errno;
    }
out:
    close(src);
    if (error != 0) {
        if (fd >= 0) close(fd);
        return -error;
    }
    return fd;
}

int skiff_set_thread_name(const char *name) {
    return pthread_setname_np(pthread_self(), name);
}
