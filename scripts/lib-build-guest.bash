# Functions of scripts/build-guest (sourced by it; they read its variables: kmods, kver,
# kernel_pkg, busybox, compress, work, kx, and the module index mod_path, mod_deps, builtin).

# resolve NAME...: sets `order` to the module files to load, dependencies first (modules.dep
# lists a module's dependencies, all of them, in reverse load order), each once; `skipped`
# to one line for each name that is built into the kernel or not there at all.
resolve() {
    order=() skipped=()
    local n key dep i
    local -a deps list
    local -A seen=()
    for n in "$@"; do
        key=${n//-/_}
        if [ -n "${builtin[$key]:-}" ]; then skipped+=("$n: built into the kernel"); continue; fi
        if [ -z "${mod_path[$key]:-}" ]; then skipped+=("$n: not in $kernel_pkg"); continue; fi
        read -r -a deps <<<"${mod_deps[$key]}"
        list=()
        for ((i = ${#deps[@]} - 1; i >= 0; i--)); do list+=("${deps[$i]}"); done
        list+=("${mod_path[$key]}")
        for dep in "${list[@]}"; do
            [ -n "${seen[$dep]:-}" ] && continue
            seen[$dep]=1
            order+=("$dep")
        done
    done
}

# install_modules ROOT FILE...: copies the module files (decompressed: the agent and busybox
# load them with plain init_module) and the kernel's lists of built-ins into ROOT, then runs
# depmod there so ROOT gets its own modules.dep, modules.alias and the rest.
# strip_signature FILE: drops the signature Debian appends to a module. The kernel then
# skips checking it (an RSA verification, emulated under TCG: some 5 ms a module) and notes
# a taint; the modules come from this image, which the host built, so the check adds nothing.
strip_signature() {
    python3 - "$1" <<'PY'
import struct, sys
magic = b"~Module signature appended~\n"
path = sys.argv[1]
data = open(path, "rb").read()
if data.endswith(magic):
    info = data[-len(magic) - 12:-len(magic)]
    (length,) = struct.unpack(">I", info[8:12])
    open(path, "wb").write(data[:-len(magic) - 12 - length])
PY
}

install_modules() {
    local root=$1 rel src dst
    shift
    local dir=$root/lib/modules/$kver
    mkdir -p "$dir"
    for rel in "$@"; do
        src=$kmods/$rel
        dst=$dir/${rel%.ko*}.ko
        mkdir -p "${dst%/*}"
        case "$rel" in
            *.ko) cp "$src" "$dst" ;;
            *.ko.xz) xz -dc "$src" >"$dst" ;;
            *.ko.zst) zstd -dcq "$src" >"$dst" ;;
            *.ko.gz) gzip -dc "$src" >"$dst" ;;
            *) die "unexpected module file $rel" ;;
        esac
        strip_signature "$dst"
        echo "${rel%.ko*}.ko" >>"$dir/modules.order"
    done
    cp "$kmods/modules.builtin" "$kmods/modules.builtin.modinfo" "$dir/"
    depmod -b "$root" "$kver"
}

# --- What every image has -----------------------------------------------------------------
# install_base ROOT: the directories the agent mounts on or writes to, a console device for
# /init's first output, busybox with a link for each applet (/bin/sh among them), and root
# in /etc/passwd and /etc/group.
install_base() {
    local root=$1 applet
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,run,tmp,mnt,etc,root}
    chmod 1777 "$root/tmp"
    mknod -m 600 "$root/dev/console" c 5 1
    mknod -m 666 "$root/dev/null" c 1 3
    cp "$busybox" "$root/bin/busybox"
    while read -r applet; do
        [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
    done < <("$busybox" --list-full | grep -v '^bin/busybox$')
    echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
    echo 'root:x:0:' >"$root/etc/group"
}

# pack ROOT FILE: the newc cpio archive the kernel unpacks, owned by root, with fixed times
# and in a fixed order so the same inputs give the same bytes; then the chosen compression.
pack() {
    local root=$1 file=$2
    find "$root" -exec touch -h -d @0 {} +
    (cd "$root" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
        cpio --null -o -H newc -R 0:0 --reproducible --quiet) | "${compress[@]}" >"$file"
}

# --- The kernel, decompressed -------------------------------------------------------------
# vmlinuz is a bzImage: real-mode setup code, then a decompressor and the kernel's ELF image
# compressed (xz in Debian). Under TCG the guest spends about 3 s emulating that
# decompression. The ELF image, decompressed here once, boots with QEMU's -kernel too, through
# its PVH entry point (CONFIG_PVH), and skips it. Boot protocol: setup_sects (byte at 0x1f1;
# 0 means 4) sets where the protected-mode part starts, (setup_sects + 1) * 512; payload_offset
# (0x248) and payload_length (0x24c) place the compressed kernel in it; its last 4 bytes are
# the uncompressed size.
le() { od -An -t "u$2" -j "$(($1))" -N "$2" "$work/vmlinuz" | tr -d ' '; }
extract_vmlinux() {
    local sects offset length start magic size
    grep -qx 'CONFIG_PVH=y' "$kx/boot/config-$kver" || { say "kernel has no PVH entry: no vmlinux"; return 1; }
    sects=$(le 0x1f1 1); [ "$sects" != 0 ] || sects=4
    offset=$(le 0x248 4)
    length=$(le 0x24c 4)
    start=$(((sects + 1) * 512 + offset))
    tail -c +"$((start + 1))" "$work/vmlinuz" | head -c "$length" >"$work/payload"
    size=$(tail -c 4 "$work/payload" | od -An -t u4 | tr -d ' ')
    truncate -s -4 "$work/payload"
    magic=$(od -An -t x1 -N 4 "$work/payload" | tr -d ' ')
    case "$magic" in
        fd377a58) xz -dc "$work/payload" ;;
        28b52ffd) zstd -dcq "$work/payload" ;;
        1f8b*) gzip -dc "$work/payload" ;;
        02214c18) lz4 -dcq "$work/payload" ;;
        *) say "kernel payload compressed in a format this script does not know ($magic): no vmlinux"; return 1 ;;
    esac >"$work/vmlinux"
    rm -f "$work/payload"
    [ "$(stat -c %s "$work/vmlinux")" = "$size" ] && [ "$(head -c4 "$work/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ] ||
        die "decompressing the kernel in vmlinuz gave no ELF image of the recorded $size bytes"
}
