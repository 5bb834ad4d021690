/*
 * skiff-init: the guest's /init. It mounts /proc, which the static Swift runtime reads
 * before skiff-agent's main runs, and executes skiff-agent as PID 1.
 *
 * Freestanding (no libc, raw x86-64 system calls) so that it is a few kilobytes: a shell
 * script doing the same took about 0.03 s longer to reach the agent under emulation.
 * scripts/build-guest compiles it: cc -static -nostdlib -Os.
 */

#define SYS_write 1
#define SYS_execve 59
#define SYS_exit 60
#define SYS_mkdir 83
#define SYS_mount 165
#define MS_NOSUID 2
#define MS_NODEV 4
#define MS_NOEXEC 8

static long sys(long n, long a, long b, long c, long d, long e) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                     : "rcx", "r11", "memory");
    return ret;
}

static void say(const char *text) {
    long length = 0;
    while (text[length]) length++;
    sys(SYS_write, 2, (long)text, length, 0, 0);
}

void _start(void) {
    static const char agent[] = "/sbin/skiff-agent";
    static char *const argv[] = { (char *)agent, 0 };
    static char *const envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", 0 };
    sys(SYS_mkdir, (long)"/proc", 0555, 0, 0, 0);
    if (sys(SYS_mount, (long)"proc", (long)"/proc", (long)"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, 0) < 0)
        say("skiff-init: mounting /proc failed\n");
    sys(SYS_execve, (long)agent, (long)argv, (long)envp, 0, 0);
    say("skiff-init: cannot execute /sbin/skiff-agent\n");
    sys(SYS_exit, 127, 0, 0, 0, 0);
    for (;;) {}
}
