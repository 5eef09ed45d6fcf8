#!/usr/bin/env bash
# Build (or reuse) the OCI test images of tests/tests/oci_images.rs from the
# busybox root filesystem tarball, with Debian's umoci and skopeo:
#
#   tests/make-oci-images.sh CACHE_DIR BUSYBOX_TAR
#
# Prints the directory holding them, keyed by this recipe and the busybox
# tarball (a changed recipe builds anew):
#   layout/       OCI layout, tag `final`, gzip layers: 1 busybox + /gone +
#                 /opq/old, 2 deletes /gone (a whiteout), 3 makes /opq opaque
#                 with /opq/new; config Cmd, Env, WorkingDir, a label
#   layout/ tag `second`: the busybox layer plus one small layer of its own
#   zstd/         the same image with zstd layers (skopeo)
#   oci.tar       a tar of layout/ (an OCI archive)
#   docker.tar    a Docker archive of it (skopeo docker-archive)
set -euo pipefail
prog=${0##*/}
die() { printf '%s: %s\n' "$prog" "$*" >&2; exit 1; }
[ $# -eq 2 ] || { printf 'usage: %s CACHE_DIR BUSYBOX_TAR\n' "$prog" >&2; exit 2; }
cache=$1 busybox=$2
for c in umoci skopeo; do
    command -v "$c" >/dev/null 2>&1 || die "$c is not installed; run: apt-get install -y umoci skopeo"
done
key=$( (cat "$0"; sha256sum <"$busybox") | sha256sum | cut -c1-16)
out=$cache/oci-$key
if [ -e "$out/done" ]; then echo "$out"; exit 0; fi
rm -rf "$cache"/oci-*
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
L=$out/layout
{
    umoci init --layout "$L"
    umoci new --image "$L:base"
    umoci unpack --image "$L:base" "$work/b1"
    tar -C "$work/b1/rootfs" -xf "$busybox"
    echo gone >"$work/b1/rootfs/gone"
    mkdir -p "$work/b1/rootfs/opq"
    echo old >"$work/b1/rootfs/opq/old"
    umoci repack --image "$L:base" "$work/b1"
    # a second image over the same base
    umoci unpack --image "$L:base" "$work/s"
    echo second >"$work/s/rootfs/second"
    umoci repack --image "$L:second" "$work/s"
    # layer 2: a whiteout of /gone
    umoci unpack --image "$L:base" "$work/b2"
    rm "$work/b2/rootfs/gone"
    umoci repack --image "$L:two" "$work/b2"
    # layer 3: /opq opaque, written by hand (umoci writes per-file whiteouts)
    mkdir -p "$work/l3/opq"
    : >"$work/l3/opq/.wh..wh..opq"
    echo new >"$work/l3/opq/new"
    tar -C "$work/l3" --owner=0 --group=0 -cf "$work/l3.tar" opq opq/.wh..wh..opq opq/new
    umoci raw add-layer --image "$L:two" --tag final "$work/l3.tar"
    # shellcheck disable=SC2016 # $PWD and $GREETING expand in the container
    umoci config --image "$L:final" --tag final --config.cmd sh --config.cmd -c \
        --config.cmd 'echo "cmd in $PWD as $GREETING"' --config.env GREETING=hello \
        --config.env OTHER=1 --config.workingdir /opq --config.label org.example=oci
    umoci gc --layout "$L"
    skopeo copy --dest-compress-format zstd "oci:$L:final" "oci:$out/zstd:final"
    skopeo copy "oci:$L:final" "docker-archive:$out/docker.tar:localhost/oci-docker:v1"
    tar -C "$L" -cf "$out/oci.tar" .
} >&2
chmod -R a+rX "$out"
touch "$out/done"
echo "$out"
