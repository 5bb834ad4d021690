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
#include <linux/random.h>
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

#include <sys/socket.h>
#include <sys/un.h>

int skiff_unix_listen(const char *path) {
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(addr.sun_path)) return -ENAMETOOLONG;
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    unlink(path);
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 1) != 0) {
        int error = errno;
        close(fd);
        return -error;
    }
    return fd;
}

int skiff_accept_fd(int listener) {
    int conn;
    do { conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC); } while (conn < 0 && errno == EINTR);
    if (conn < 0) return -errno;
    char byte[64];
    char control[CMSG_SPACE(sizeof(int))];
    struct iovec iov = { .iov_base = byte, .iov_len = sizeof(byte) };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control) };
    ssize_t n;
    do { n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    int error = n < 0 ? errno : 0;
    close(conn);
    if (n < 0) return -error;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
            int fd;
            memcpy(&fd, CMSG_DATA(c), sizeof(int));
            return fd;
        }
    }
    return -EBADMSG;
}

int skiff_get_window_size(int fd, unsigned short *rows, unsigned short *cols) {
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) != 0) return -1;
    *rows = ws.ws_row;
    *cols = ws.ws_col;
    return 0;
}

#include <linux/if.h>
#include <linux/if_tun.h>

int skiff_send_with_fd(int sock, const void *data, unsigned long len, int fd) {
    struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
    char control[CMSG_SPACE(sizeof(int))];
    memset(control, 0, sizeof(control));
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control) };
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    ssize_t n;
    do { n = sendmsg(sock, &msg, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : (int)n;
}

struct tap_request { const char *netns; const char *name; int result; };

static void *open_tap_thread(void *arg) {
    struct tap_request *request = arg;
    int ns = open(request->netns, O_RDONLY | O_CLOEXEC);
    if (ns < 0) { request->result = -errno; return NULL; }
    /* Only this thread enters the namespace; it ends right after. */
    if (setns(ns, CLONE_NEWNET) != 0) { request->result = -errno; close(ns); return NULL; }
    close(ns);
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) { request->result = -errno; return NULL; }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    strncpy(ifr.ifr_name, request->name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) != 0) { request->result = -errno; close(fd); return NULL; }
    request->result = fd;
    return NULL;
}

int skiff_open_tap_in_netns(const char *netns, const char *name) {
    if (strlen(name) >= IFNAMSIZ) return -ENAMETOOLONG;
    struct tap_request request = { netns, name, -EIO };
    pthread_t thread;
    int rc = pthread_create(&thread, NULL, open_tap_thread, &request);
    if (rc != 0) return -rc;
    pthread_join(thread, NULL);
    return request.result;
}

int skiff_set_link_up(const char *name) {
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0) return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    int rc = ioctl(sock, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP;
        rc = ioctl(sock, SIOCSIFFLAGS, &ifr);
    }
    int error = rc == 0 ? 0 : errno;
    close(sock);
    return -error;
}

int skiff_add_entropy_and_reseed(const void *data, unsigned long len) {
    if (len == 0 || len > 512) return -EINVAL;
    struct {
        struct rand_pool_info info;
        unsigned char bytes[512];
    } pool;
    pool.info.entropy_count = (int)(len * 8);
    pool.info.buf_size = (int)len;
    memcpy(pool.bytes, data, len);
    int fd = open("/dev/random", O_RDWR | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = 0;
    if (ioctl(fd, RNDADDENTROPY, &pool.info) != 0 || ioctl(fd, RNDRESEEDCRNG) != 0) rc = -errno;
    close(fd);
    return rc;
}

int skiff_set_pipe_size(int fd, int bytes) {
    int rc = fcntl(fd, F_SETPIPE_SZ, bytes);
    return rc < 0 ? -errno : rc;
}
