#!/usr/bin/env bash
# Build (or reuse) the Debian bookworm root filesystem the end-to-end battery
# runs in (tests/tests/debian.rs), with mmdebstrap, as root:
#
#   tests/make-debian-image.sh CACHE_DIR
#
# Prints the path of the tarball on standard output (progress goes to
# standard error). The tarball is cached in CACHE_DIR under a name keyed by
# the recipe (suite, variant, packages, exclusions, hooks, timestamp and the
# host's apt sources), so a second run with the same recipe reuses it and a
# changed recipe builds a new one; older tarballs of this recipe family are
# removed. The packages come from the host's apt sources (the mirror this
# machine already uses); nothing else on the network is used.
#
# The tarball is what mmdebstrap writes, as a user would build it: device
# nodes in /dev included (the import leaves them out), and the build host's
# /etc/hostname and /etc/resolv.conf replaced by fixed stale copies (a
# loopback resolver, as on a host running systemd-resolved) so that the
# output does not depend on this host and the battery can check that each
# container gets its own.
set -euo pipefail

prog=${0##*/}
die() { printf '%s: %s\n' "$prog" "$*" >&2; exit 1; }

[ $# -eq 1 ] || { printf 'usage: %s CACHE_DIR\n' "$prog" >&2; exit 2; }
cache=$1
[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap's root mode creates the device nodes a stock tarball has)"
command -v mmdebstrap >/dev/null 2>&1 || die "mmdebstrap is not installed; run: apt-get install mmdebstrap"

# The recipe. Everything that changes the tarball's contents is here and in
# the key below.
suite=bookworm
variant=minbase
# sudo, su (util-linux), useradd (passwd), getent (libc-bin) are what the
# battery runs; ping and getcap are the file-capability checks.
packages=sudo,iputils-ping,libcap2-bin
epoch=1700000000 # SOURCE_DATE_EPOCH: file times and reproducible output
dpkgopts=(
    'path-exclude=/usr/share/man/*'
    'path-exclude=/usr/share/locale/*'
    'path-exclude=/usr/share/info/*'
    'path-exclude=/usr/share/doc/*'
    'path-include=/usr/share/doc/*/copyright'
)
# shellcheck disable=SC2016 # "$1" is the hooks' argument (the root), expanded by mmdebstrap
hooks=(
    'printf "mmdebstrap-build\n" > "$1/etc/hostname"; chmod 0644 "$1/etc/hostname"'
    'printf "nameserver 127.0.0.53\noptions edns0 trust-ad\n" > "$1/etc/resolv.conf"; chmod 0644 "$1/etc/resolv.conf"'
)

# The host's apt sources: every enabled sources.list-style file, in order.
sources=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    grep -Eq '^[[:space:]]*(deb|Types:)' "$f" || continue
    sources+=("$f")
done
[ "${#sources[@]}" -gt 0 ] || die "no apt sources on this host (/etc/apt/sources.list*)"

key=$(
    {
        printf 'recipe 1\n%s\n%s\n%s\n%s\n' "$suite" "$variant" "$packages" "$epoch"
        printf '%s\n' "${dpkgopts[@]}" "${hooks[@]}"
        for f in "${sources[@]}"; do
            printf '== %s\n' "$f"
            cat "$f"
        done
    } | sha256sum | cut -c1-16
)
name=debian-$suite-$key.tar
out=$cache/$name

install -d -m 0755 "$cache"
if [ -s "$out" ]; then
    echo "$prog: reusing $out" >&2
    printf '%s\n' "$out"
    exit 0
fi

args=(--variant="$variant" --include="$packages" --mode=root --format=tar --quiet)
for o in "${dpkgopts[@]}"; do args+=(--dpkgopt="$o"); done
for h in "${hooks[@]}"; do args+=(--customize-hook="$h"); done

tmp=$(mktemp "$cache/.$name.XXXXXX")
trap 'rm -f "$tmp"' EXIT
echo "$prog: building $name with mmdebstrap ($suite, $variant, +$packages) from ${sources[*]}" >&2
start=$(date +%s)
SOURCE_DATE_EPOCH=$epoch mmdebstrap "${args[@]}" "$suite" "$tmp" "${sources[@]}" >&2 ||
    die "mmdebstrap failed"
chmod 0644 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
# Only the current recipe's tarball is kept.
for old in "$cache"/debian-"$suite"-*.tar; do
    [ "$old" = "$out" ] || rm -f "$old"
done
echo "$prog: built $out ($(du -h "$out" | cut -f1)) in $(($(date +%s) - start)) s" >&2
printf '%s\n' "$out"
