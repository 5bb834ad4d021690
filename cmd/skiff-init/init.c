/*
 * skiff-init: the guest's /init, in a small initramfs. The guest's root is not in that
 * initramfs: it is an erofs image the host maps into the VM as a virtio-pmem device, read
 * through DAX, so every VM reads the same pages of the host's page cache instead of
 * unpacking its own copy into RAM. This program:
 *   1. mounts devtmpfs on /dev and loads the modules listed in /lib/modules/order (one file
 *      name a line, dependencies first: virtio, libnvdimm, virtio_pmem, nd_pmem, erofs,
 *      overlay), each from /lib/modules;
 *   2. mounts /dev/pmem0 (erofs, read-only, dax=always) on /lower, waiting for the nvdimm
 *      bus to make the device (it probes asynchronously), at most 10 s;
 *   3. mounts an overlay of it with a tmpfs on /root, so the root is writable as before;
 *   4. mounts /proc on it (the static Swift runtime reads /proc before main), moves /dev
 *      there, makes it the root (MS_MOVE onto /, chroot) and executes /sbin/skiff-agent as
 *      PID 1.
 * Any failure is said on the console and ends PID 1, which panics the kernel (panic=-1
 * reboots, and -no-reboot ends QEMU): the host sees the boot fail, with the console.
 *
 * Freestanding (no libc, raw x86-64 system calls) so that it is a few kilobytes: a shell
 * script doing the same took about 0.03 s longer to reach the agent under emulation.
 * scripts/build-guest compiles it: cc -static -nostdlib -Os.
 */

#define SYS_read 0
#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_nanosleep 35
#define SYS_execve 59
#define SYS_exit 60
#define SYS_chdir 80
#define SYS_mkdir 83
#define SYS_chroot 161
#define SYS_mount 165
#define SYS_finit_module 313
#define MS_RDONLY 1
#define MS_NOSUID 2
#define MS_NODEV 4
#define MS_NOEXEC 8
#define MS_MOVE 8192
#define EEXIST 17

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

static void fail(const char *what, const char *detail) {
    say("skiff-init: ");
    say(what);
    say(detail);
    say("\n");
    sys(SYS_exit, 1, 0, 0, 0, 0);
    for (;;) {}
}

static long mount(const char *source, const char *target, const char *type, long flags, const char *data) {
    return sys(SYS_mount, (long)source, (long)target, (long)type, flags, (long)data);
}

/* Loads every module /lib/modules/order names, in order. One already loaded (or built in
 * and so absent from the list) is fine. */
static void load_modules(void) {
    static char list[4096];
    static char path[256] = "/lib/modules/";
    const long prefix = 13;
    long fd = sys(SYS_open, (long)"/lib/modules/order", 0, 0, 0, 0);
    if (fd < 0) fail("cannot open ", "/lib/modules/order");
    long n = sys(SYS_read, fd, (long)list, sizeof list - 1, 0, 0);
    sys(SYS_close, fd, 0, 0, 0, 0);
    if (n <= 0) fail("cannot read ", "/lib/modules/order");
    list[n] = 0;
    char *name = list;
    while (*name) {
        char *end = name;
        while (*end && *end != '\n') end++;
        char next = *end;
        *end = 0;
        if (end > name && (end - name) + prefix < (long)sizeof path) {
            long i = 0;
            for (; name + i < end; i++) path[prefix + i] = name[i];
            path[prefix + i] = 0;
            long module = sys(SYS_open, (long)path, 0x80000 /* O_CLOEXEC */, 0, 0, 0);
            if (module < 0) fail("cannot open module ", path);
            long r = sys(SYS_finit_module, module, (long)"", 0, 0, 0);
            sys(SYS_close, module, 0, 0, 0, 0);
            if (r < 0 && r != -EEXIST) fail("cannot load module ", path);
        }
        if (!next) break;
        name = end + 1;
    }
}

/* The kernel enters _start with the stack 16-byte aligned, not as a call would leave it;
 * the attribute realigns it, so the compiler's aligned SSE stores do not fault. */
__attribute__((force_align_arg_pointer)) void _start(void) {
    static const char agent[] = "/sbin/skiff-agent";
    static char *const argv[] = { (char *)agent, 0 };
    static char *const envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", 0 };
    sys(SYS_mkdir, (long)"/dev", 0755, 0, 0, 0);
    if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") < 0) fail("mounting ", "/dev");
    load_modules();

    sys(SYS_mkdir, (long)"/lower", 0755, 0, 0, 0);
    /* The nvdimm bus probes the region asynchronously: try every 2 ms, for 10 s at most. */
    static const struct { long sec, nsec; } pause = { 0, 2000000 };
    long tries = 0;
    while (mount("/dev/pmem0", "/lower", "erofs", MS_RDONLY, "dax=always") < 0) {
        if (++tries == 5000) fail("no guest root: cannot mount ", "/dev/pmem0 (erofs, dax)");
        sys(SYS_nanosleep, (long)&pause, 0, 0, 0, 0);
    }
    sys(SYS_mkdir, (long)"/upper", 0755, 0, 0, 0);
    if (mount("tmpfs", "/upper", "tmpfs", 0, "mode=0755") < 0) fail("mounting ", "/upper");
    sys(SYS_mkdir, (long)"/upper/data", 0755, 0, 0, 0);
    sys(SYS_mkdir, (long)"/upper/work", 0755, 0, 0, 0);
    sys(SYS_mkdir, (long)"/root", 0755, 0, 0, 0);
    if (mount("overlay", "/root", "overlay", 0, "lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work") < 0)
        fail("mounting the root ", "overlay");
    if (mount("/dev", "/root/dev", 0, MS_MOVE, 0) < 0) fail("moving ", "/dev");
    if (mount("proc", "/root/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, 0) < 0) fail("mounting ", "/proc");
    if (sys(SYS_chdir, (long)"/root", 0, 0, 0, 0) < 0 || mount(".", "/", 0, MS_MOVE, 0) < 0 ||
        sys(SYS_chroot, (long)".", 0, 0, 0, 0) < 0 || sys(SYS_chdir, (long)"/", 0, 0, 0, 0) < 0)
        fail("cannot switch to ", "the guest root");
    sys(SYS_execve, (long)agent, (long)argv, (long)envp, 0, 0);
    fail("cannot execute ", agent);
}
