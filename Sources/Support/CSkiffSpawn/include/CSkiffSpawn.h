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

/// Starts `path` with `argv` and `envp` in a new session, stdin from /dev/null and stdout and
/// stderr appended to `output_fd`, every other descriptor closed, signals at their defaults
/// and unmasked, no new privileges (PR_SET_NO_NEW_PRIVS), and `program` (`length`
/// instructions) as its seccomp filter from its very first instruction (execve itself and all
/// the dynamic loader does must be allowed). The child runs only async-signal-safe calls
/// before execve; if any step fails it exits 127. The child's pid, or -errno when fork fails.
pid_t skiff_spawn_filtered(const char *path, char *const argv[], char *const envp[], int output_fd,
                           const struct sock_filter *program, unsigned short length);
#endif
