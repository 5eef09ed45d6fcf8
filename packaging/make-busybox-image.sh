#!/usr/bin/env bash
# Build tupperware's default image, "busybox", as a docker-export-style rootfs
# tarball from Debian's statically linked busybox (package busybox-static).
#
#   packaging/make-busybox-image.sh OUT.tar
#
# Everything in the tarball is owned by uid/gid 0 (container root) and the
# output is byte-for-byte reproducible for a given busybox binary.
set -euo pipefail

prog=${0##*/}
die() { printf '%s: %s\n' "$prog" "$*" >&2; exit 1; }
usage() { printf 'usage: %s OUT.tar\n' "$prog"; }

case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    "" | -*) usage >&2; exit 2 ;;
esac
[ $# -eq 1 ] || { usage >&2; exit 2; }
out=$1
out_dir=$(dirname -- "$out")
[ -d "$out_dir" ] || die "no such directory: $out_dir"
out_abs=$(cd -- "$out_dir" && pwd)/${out##*/}

# The static busybox: from busybox-static, installed on demand (root only).
find_busybox() {
    dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed" || return 1
    dpkg-query -L busybox-static | grep -E '/bin/busybox$' | head -n1
}
if ! bb=$(find_busybox) || [ -z "$bb" ]; then
    [ "$(id -u)" = 0 ] || die "busybox-static is not installed; run: sudo apt-get install busybox-static"
    echo "$prog: installing busybox-static"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static
    bb=$(find_busybox) || die "busybox-static installed but no bin/busybox in it"
fi
[ -x "$bb" ] || die "$bb is not executable"
if LC_ALL=C readelf -d "$bb" 2>/dev/null | grep -q NEEDED; then
    die "$bb is dynamically linked; the image needs the static busybox (busybox-static)"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/tupper-busybox.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"
cd "$root"

# Directories of a minimal Linux root.
mkdir -p bin sbin usr/bin usr/sbin dev proc sys tmp root etc var/tmp run home
chmod 0755 bin sbin usr usr/bin usr/sbin dev proc sys root etc var run home
chmod 0700 root
chmod 1777 tmp var/tmp

install -m 0755 "$bb" bin/busybox

# One relative symlink per applet, where busybox itself says it belongs.
applets=0
while IFS= read -r path; do
    case "$path" in
        */*) ;;           # bin/sh, usr/bin/env, ...
        *) continue ;;    # "linuxrc" at the top: an initrd relic, not for containers
    esac
    [ "$path" = bin/busybox ] && continue
    dir=${path%/*}
    case "$dir" in
        bin | sbin | usr/bin | usr/sbin) ;;
        *) die "unexpected applet location: $path" ;;
    esac
    # ../ once per directory level below bin/'s level.
    up=$(printf '%s' "$dir" | sed -e 's,[^/]*,..,g')
    target=$up/bin/busybox
    [ "$dir" = bin ] && target=busybox
    [ -e "$path" ] || [ -L "$path" ] || ln -s "$target" "$path"
    applets=$((applets + 1))
done < <("$root/bin/busybox" --list-full | LC_ALL=C sort)
[ -L bin/sh ] || die "busybox has no sh applet"

cat >etc/passwd <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >etc/group <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
cat >etc/hosts <<'EOF'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
EOF
printf 'hosts: files dns\n' >etc/nsswitch.conf
chmod 0644 etc/passwd etc/group etc/hosts etc/nsswitch.conf

# Reproducible: sorted names, fixed times, numeric root ownership.
tar --sort=name --mtime=@0 --numeric-owner --owner=0 --group=0 \
    --format=gnu -C "$root" -cf "$work/image.tar" .
mv -f "$work/image.tar" "$out_abs"

printf '%s: wrote %s (busybox %s, %d applets, %s bytes)\n' "$prog" "$out_abs" \
    "$("$bb" 2>&1 | head -n1 | awk '{print $2}')" "$applets" "$(stat -c %s "$out_abs")"
