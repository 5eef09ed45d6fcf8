#!/usr/bin/env bash
# Start-up latency of tupperware against crun, runc and bubblewrap: the median
# wall time of `true` in a fresh container. Reported, never asserted.
#
#   sudo bench/bench.sh [--prefix P] [--user U] [--runs N] [--warmup N] [--peers-only]
#
# Assumes packaging/install.sh was run with the same --prefix and gave U a
# subordinate id range; imports the busybox image for U if U lacks it.
# Everything runs inside a network namespace created here ("tw-bench", deleted
# on exit), so the bridge benchmark never touches the host's interfaces.
set -euo pipefail

prog=${0##*/}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd /   # the unprivileged user must be able to stay in the working directory
die() { printf '%s: %s\n' "$prog" "$*" >&2; exit 1; }
note() { printf '%s: %s\n' "$prog" "$*"; }

NETNS=tw-bench
PREFIX=/usr/local
BENCH_USER=${SUDO_USER:-tupper}
RUNS=20
WARMUP=3
PEERS_ONLY=0

usage() {
    cat <<EOF
usage: $prog [--prefix P] [--user U] [--runs N] [--warmup N] [--peers-only]

  --prefix P     where tupperware is installed (default /usr/local)
  --user U       the unprivileged user running tupperware and bwrap
                 (default \$SUDO_USER, else "tupper")
  --runs N       measured runs per command (default 20)
  --warmup N     warm-up runs per command (default 3)
  --peers-only   only crun, runc and bwrap (no tupperware needed)
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix | --user | --runs | --warmup)
            [ $# -ge 2 ] || die "$1 needs a value"
            case "$1" in
                --prefix) PREFIX=${2%/} ;;
                --user) BENCH_USER=$2 ;;
                --runs) RUNS=$2 ;;
                --warmup) WARMUP=$2 ;;
            esac
            shift 2
            ;;
        --peers-only) PEERS_ONLY=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive number"
[[ "$WARMUP" =~ ^[0-9]+$ ]] || die "--warmup must be a number"
[ "$(id -u)" = 0 ] || die "run as root (it creates a network namespace and runs crun/runc as root)"

SUPERVISOR=$PREFIX/bin/tupper-supervisor
have_user=0
if id -u "$BENCH_USER" >/dev/null 2>&1; then
    [ "$(id -u "$BENCH_USER")" != 0 ] || die "--user must be an ordinary user, not root"
    have_user=1
fi
if [ "$PEERS_ONLY" = 0 ]; then
    [ "$have_user" = 1 ] || die "no such user: $BENCH_USER (give --user U, or --peers-only)"
    [ -x "$SUPERVISOR" ] || die "$SUPERVISOR not found: run packaging/install.sh --prefix $PREFIX --user $BENCH_USER first"
fi

# --- tools -------------------------------------------------------------------

missing=()
for pair in runc:runc crun:crun bwrap:bubblewrap hyperfine:hyperfine jq:jq nsenter:util-linux \
    setpriv:util-linux ip:iproute2; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    note "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- work dir, network namespace, cleanup -------------------------------------------

work=$(mktemp -d /tmp/tw-bench.XXXXXX)
chmod 0755 "$work"
bundle=$work/bundle
results=$work/results
mkdir -p "$bundle/rootfs" "$results"
[ "$have_user" = 0 ] || chown "$BENCH_USER" "$results"

cleanup() {
    local rt id
    for rt in runc crun; do
        command -v "$rt" >/dev/null 2>&1 || continue
        for id in $("$rt" list -q 2>/dev/null | grep '^tw-bench-' || true); do
            "$rt" delete -f "$id" >/dev/null 2>&1 || true
        done
    done
    ip netns del "$NETNS" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ip netns list | awk '{print $1}' | grep -qx "$NETNS"; then
    note "removing a leftover network namespace $NETNS"
    ip netns del "$NETNS"
fi
ip netns add "$NETNS"
ip -n "$NETNS" link set lo up

# Enter only the network namespace. (`ip netns exec` would also remount /sys,
# which hides the cgroup mounts runc, crun and tupper-ns need.)
in_netns() { nsenter --net="/run/netns/$NETNS" -- "$@"; }
# As the unprivileged user: no capabilities, clean environment.
as_user() {
    in_netns setpriv --reuid="$BENCH_USER" --regid="$BENCH_USER" --init-groups \
        --inh-caps=-all --reset-env -- "$@"
}

# --- the rootfs ------------------------------------------------------------------

tarball=$work/busybox.tar
"$repo/packaging/make-busybox-image.sh" "$tarball" >/dev/null
chmod 0644 "$tarball"
tar --numeric-owner -xpf "$tarball" -C "$bundle/rootfs"

# OCI bundle from runc's default spec: no terminal, command `true`. The default
# spec keeps its own pid, ipc, uts, mount and network namespaces (the latter
# with only lo), and no user namespace since it runs as root.
(cd "$bundle" && runc spec)
jq '.process.terminal = false | .process.args = ["true"]' "$bundle/config.json" >"$bundle/config.json.new"
mv "$bundle/config.json.new" "$bundle/config.json"

# --- benchmarks -------------------------------------------------------------------

hf=(hyperfine --runs "$RUNS" --warmup "$WARMUP" --style basic)
names=()
notes=()

bench() { # bench NAME NOTE RUNNER... :: COMMAND
    local name=$1 what=$2
    shift 2
    local runner=()
    while [ "$1" != :: ]; do runner+=("$1"); shift; done
    shift
    printf '\n== %s\n' "$name"
    # One plain run first, so a failure shows its own message (hyperfine hides it).
    if ! "${runner[@]}" sh -c "$1"; then
        note "$name: \`$1\` failed; left out of the table"
        return 0
    fi
    if "${runner[@]}" "${hf[@]}" --export-json "$results/$name.json" --command-name "$name" "$1"; then
        names+=("$name")
        notes+=("$what")
    else
        note "$name failed; left out of the table"
    fi
}

if [ "$PEERS_ONLY" = 0 ]; then
    if ! as_user "$SUPERVISOR" image ls 2>/dev/null | awk 'NR > 1 { print $1 }' | grep -qx busybox; then
        note "importing the busybox image for $BENCH_USER"
        as_user "$SUPERVISOR" image import busybox "$tarball" ||
            note "image import failed: the tupperware runs below will fail too"
    fi
    bench tupper-none "user ns + own pid/mount/uts/ipc/net ns (lo only), btrfs snapshot; unprivileged" \
        as_user :: "$SUPERVISOR run --rm --network none busybox true"
    bench tupper-bridge "as tupper-none + veth on bridge, address lease, routes; unprivileged" \
        as_user :: "$SUPERVISOR run --rm --network bridge busybox true"
fi

# crun 1.8 on a cgroup v1/v2 hybrid host needs the v2 mount out of sight: run
# the whole measurement in a private mount namespace without it.
# shellcheck disable=SC2016 # $$ expands in hyperfine's shell: a unique id per run
bench crun "runc's default spec: pid/mount/uts/ipc/net ns (lo only), cgroup; as root, no user ns" \
    in_netns unshare -m --propagation private sh -c \
    'umount /sys/fs/cgroup/unified 2>/dev/null || true; exec "$@"' sh :: \
    'crun run --bundle '"$bundle"' tw-bench-crun-$$ </dev/null'
# shellcheck disable=SC2016
bench runc "same bundle as crun; as root, no user ns" \
    in_netns :: 'runc run --bundle '"$bundle"' tw-bench-runc-$$ </dev/null'
if [ "$have_user" = 1 ]; then
    bench bwrap "bwrap --unshare-all (user/pid/net/ipc/uts/cgroup ns), ro rootfs, no cgroup; unprivileged" \
        as_user :: "bwrap --unshare-all --ro-bind $bundle/rootfs / --proc /proc --dev /dev true"
else
    note "no user $BENCH_USER: skipping bwrap"
fi

# --- report -------------------------------------------------------------------

[ "${#names[@]}" -gt 0 ] || die "every benchmark failed"
median_ms() { jq -r '.results[0].median * 1000' "$results/$1.json"; }
crun_ms=
for n in "${names[@]}"; do [ "$n" = crun ] && crun_ms=$(median_ms crun); done

printf '\nmedian wall time of "true" in a new container, %d runs after %d warm-up, inside netns %s\n' \
    "$RUNS" "$WARMUP" "$NETNS"
printf '%-14s %10s %9s  %s\n' command "median ms" "vs crun" "what runs"
for i in "${!names[@]}"; do
    n=${names[$i]}
    ms=$(median_ms "$n")
    ratio=-
    [ -z "$crun_ms" ] || ratio=$(awk -v a="$ms" -v b="$crun_ms" 'BEGIN { printf "%.2fx", a / b }')
    printf '%-14s %10.1f %9s  %s\n' "$n" "$ms" "$ratio" "${notes[$i]}"
done
cat <<EOF

Compared: the same busybox rootfs (packaging/make-busybox-image.sh) running \`true\`.
crun and runc use runc's default spec (terminal off), which keeps a network
namespace with only lo: comparable to \`tupper-supervisor run --network none\`;
they run as root without a user namespace, while tupperware runs as $BENCH_USER
with one. No peer sets up bridge networking (that needs CNI); tupper-bridge
shows what tupperware's own veth/bridge/lease step adds.
EOF
