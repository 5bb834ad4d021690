#ifndef CSKIFFSYS_H
#define CSKIFFSYS_H
/* Linux calls Swift cannot make directly (variadic syscall and ioctl). */
int skiff_finit_module(int fd, const char *params, int flags);
int skiff_set_window_size(int fd, unsigned short rows, unsigned short cols);
int skiff_open_pty(int *master, char *slave_name, unsigned long slave_name_len);
#include <spawn.h>
int skiff_pipe_cloexec(int fds[2]);
/// Sets the capacity of the pipe `fd` belongs to (F_SETPIPE_SZ): the capacity set, or -errno.
int skiff_set_pipe_size(int fd, int bytes);
int skiff_spawn_addchdir(posix_spawn_file_actions_t *actions, const char *path);
int skiff_spawn_addclosefrom(posix_spawn_file_actions_t *actions, int from);
/// Puts the calling thread under SCHED_IDLE: it runs only when nothing else wants the CPU.
int skiff_set_thread_idle_priority(void);
/// A copy of the file at `path` in a memfd sealed against every change (shrink, grow, write
/// and further seals): its descriptor (close-on-exec), or -errno.
int skiff_sealed_copy(const char *path);
/// Names the calling thread (what /proc/self/task/TID/comm shows; 15 bytes at most).
int skiff_set_thread_name(const char *name);
/// A unix stream socket listening at `path` (an old file there is replaced): its descriptor
/// (close-on-exec), or -errno.
int skiff_unix_listen(const char *path);
/// Accepts one connection on `listener` and returns the descriptor its first message carries
/// (SCM_RIGHTS, as an OCI runtime's --console-socket sends the terminal's master), or -errno
/// (-EINVAL once the listener was shut down).
int skiff_accept_fd(int listener);
/// The size of the terminal on `fd`, in rows and columns; -1 with errno if it is none.
int skiff_get_window_size(int fd, unsigned short *rows, unsigned short *cols);
/// Sends `len` bytes of `data` on the connected unix socket `sock` with the descriptor `fd`
/// attached (SCM_RIGHTS, as QMP's getfd takes it); bytes sent, or -errno.
int skiff_send_with_fd(int sock, const void *data, unsigned long len, int fd);
/// Opens (making it if there is none) the tap `name` in the network namespace at `netns`,
/// from a thread that enters the namespace and ends: the tap's descriptor (close-on-exec,
/// IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), or -errno. The tap lives while a descriptor does.
int skiff_open_tap_in_netns(const char *netns, const char *name);
/// Brings the network interface `name` up (SIOCSIFFLAGS); 0 or -errno.
int skiff_set_link_up(const char *name);
/// Mixes `len` bytes of `data` into the kernel's random pool, crediting them as entropy
/// (RNDADDENTROPY on /dev/random), then reseeds the CRNG at once (RNDRESEEDCRNG) so what it
/// hands out next depends on them; random(4). 0 or -errno.
int skiff_add_entropy_and_reseed(const void *data, unsigned long len);
#endif
