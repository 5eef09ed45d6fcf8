#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Start-up cost of tupperware against crun, runc and bubblewrap: the median
# wall time of `true` in a fresh container, and how many processes and program
# executions one `run --rm` costs. Reported, never asserted.
#
#   sudo bench/bench.sh [--prefix P] [--user U] [--runs N] [--warmup N] [--peers-only] [--images-only]
#
# Self-contained, as root on Debian: installs the Debian packages it needs,
# builds and installs tupperware into a prefix of its own (default
# /opt/tw-bench, with its configuration in P/etc, the store /var/lib/tw-bench
# and the state directory /run/tw-bench), creates the user U if missing, and on
# exit removes the installation, the store (unmounted), the state directory, the
# network namespace and its work directory (the user and its subordinate id
# range are kept). Everything runs inside a network namespace created here
# ("tw-bench"), so the bridge benchmark never touches the host's interfaces;
# the user's tupperware state lives in the work directory. None of these names
# is one tests/run.sh uses, so both can run at the same time.
set -euo pipefail

prog=${0##*/}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd /   # the unprivileged user must be able to stay in the working directory
die() { printf '%s: %s\n' "$prog" "$*" >&2; exit 1; }
note() { printf '%s: %s\n' "$prog" "$*"; }

NETNS=tw-bench
STORE=/var/lib/tw-bench
STATE=/run/tw-bench
PREFIX=/opt/tw-bench
BENCH_USER=twbench
RUNS=20
WARMUP=3
PEERS_ONLY=0
IMAGES_ONLY=0 # issue 10: only the image block
NO_IMAGES=0   # issue 11: skip the image block (the start-up table only)
TRACE_DIR=""  # issue 11: where to keep a timed strace of one bridge run

usage() {
    cat <<EOF
usage: $prog [--prefix P] [--user U] [--runs N] [--warmup N] [--peers-only] [--images-only] [--no-images] [--trace DIR]

  --prefix P     where this script installs tupperware (default /opt/tw-bench);
                 removed on exit, so never an installation of your own
  --user U       the unprivileged user running tupperware and bwrap (default
                 "twbench", created without a home if missing; install.sh gives
                 it a subordinate id range)
  --runs N       measured runs per command (default 20)
  --warmup N     warm-up runs per command (default 3)
  --peers-only   only crun, runc and bwrap (no build, no tupperware)
  --images-only  only the image block (issue 10): OCI import against tar -x,
                 start from a 1 GB image against a 5 MB one, second import
  --no-images    skip the image block (minutes of 1 GB imports): only the
                 start-up table
  --trace DIR    also write DIR/tupper-bridge.strace: \`strace -f -tt -T\` of one
                 \`run --rm --network bridge busybox true\` (where its time goes)
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix | --user | --runs | --warmup | --trace)
            [ $# -ge 2 ] || die "$1 needs a value"
            case "$1" in
                --prefix) PREFIX=${2%/} ;;
                --user) BENCH_USER=$2 ;;
                --runs) RUNS=$2 ;;
                --warmup) WARMUP=$2 ;;
                --trace) TRACE_DIR=$2 ;;
            esac
            shift 2
            ;;
        --peers-only) PEERS_ONLY=1; shift ;;
        --images-only) IMAGES_ONLY=1; shift ;;
        --no-images) NO_IMAGES=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive number"
[[ "$WARMUP" =~ ^[0-9]+$ ]] || die "--warmup must be a number"
[ "$IMAGES_ONLY" = 0 ] || [ "$PEERS_ONLY" = 0 ] || die "--images-only and --peers-only exclude each other"
[ "$IMAGES_ONLY" = 0 ] || [ "$NO_IMAGES" = 0 ] || die "--images-only and --no-images exclude each other"
[ "$(id -u)" = 0 ] ||
    die "run as root (it installs packages and tupperware, creates a network namespace and runs crun/runc as root)"
case "$PREFIX" in
    /*/*) ;;
    *) die "--prefix \"$PREFIX\": give a directory of the benchmark's own (removed on exit), e.g. /opt/tw-bench" ;;
esac
case "$PREFIX" in
    /usr | /usr/local | /usr/* | /opt/tupperware*) die "--prefix $PREFIX: give a directory of the benchmark's own (removed on exit)" ;;
esac

SUPERVISOR=$PREFIX/bin/tupper-supervisor
LIBEXEC=$PREFIX/libexec/tupperware
SYSCONF=$PREFIX/etc

# --- tools -------------------------------------------------------------------

missing=()
for pair in runc:runc crun:crun bwrap:bubblewrap hyperfine:hyperfine jq:jq nsenter:util-linux \
    setpriv:util-linux ip:iproute2 perf:linux-perf strace:strace useradd:passwd; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    note "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ "$PEERS_ONLY" = 0 ]; then
    # What tupperware needs to build and run (btrfs-progs, uidmap, ...) and cargo.
    # shellcheck source=../packaging/lib.sh
    . "$repo/packaging/lib.sh"
    ensure_packages
    ensure_rust
fi

# --- the user --------------------------------------------------------------------

if ! id -u "$BENCH_USER" >/dev/null 2>&1; then
    note "creating user $BENCH_USER (kept after the run)"
    useradd -M -s /usr/sbin/nologin "$BENCH_USER"
fi
[ "$(id -u "$BENCH_USER")" != 0 ] || die "--user must be an ordinary user, not root"

# --- work dir, network namespace, cleanup -------------------------------------------

work=$(mktemp -d /tmp/tw-bench.XXXXXX)
chmod 0755 "$work"
bundle=$work/bundle
results=$work/results
xdg=$work/xdg   # the user's runtime directory, so its tupperware state is ours too
mkdir -p "$bundle/rootfs" "$results" "$xdg"
chown "$BENCH_USER" "$results" "$xdg"
chmod 0700 "$xdg"
installed=0

remove_store() {
    if findmnt -n "$STORE" >/dev/null 2>&1; then
        # The loop device under it is autoclearing: it goes with the mount.
        umount "$STORE" || note "cannot unmount $STORE"
    fi
    findmnt -n "$STORE" >/dev/null 2>&1 || rm -rf "$STORE"
    rm -rf "$STATE"
}

CG_NAME=tw-bench-cgroups
CG_DIRS=()
cgroup_cleanup() {
    local d
    for d in "${CG_DIRS[@]}"; do
        [ -d "$d" ] || continue
        find "$d" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null || true
        rmdir "$d" 2>/dev/null || note "could not remove cgroup $d"
    done
}

cleanup() {
    local rt id pid
    # A process still in our network namespace was started by this script (a
    # supervisor left by an interrupted run): end it, by pid.
    if [ -e "/run/netns/$NETNS" ]; then
        for pid in $(ip netns pids "$NETNS" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
        sleep 0.5
        for pid in $(ip netns pids "$NETNS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    fi
    for rt in runc crun; do
        command -v "$rt" >/dev/null 2>&1 || continue
        for id in $("$rt" list -q 2>/dev/null | grep '^tw-bench-' || true); do
            "$rt" delete -f "$id" >/dev/null 2>&1 || true
        done
    done
    ip netns del "$NETNS" 2>/dev/null || true
    cgroup_cleanup
    if [ "$installed" = 1 ]; then
        remove_store
        "$repo/packaging/uninstall.sh" --prefix "$PREFIX" --sysconfdir "$SYSCONF" >/dev/null || true
        # What uninstall.sh leaves: empty directories of our own prefix.
        [ -d "$PREFIX" ] && find "$PREFIX" -depth -type d -empty -delete 2>/dev/null || true
    fi
    if findmnt -n "$work/xdg" >/dev/null 2>&1; then umount "$work/xdg" || note "cannot unmount $work/xdg"; fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Issue 11: a login session's runtime directory (/run/user/UID) is a tmpfs of
# the user's own; so is this one (on a disk, each record written costs a
# journal commit that no user's session pays). Unmounted with the work dir.
mount -t tmpfs -o "mode=0700,uid=$(id -u "$BENCH_USER"),gid=$(id -g "$BENCH_USER"),size=64m" \
    tw-bench-xdg "$xdg"

if ip netns list | awk '{print $1}' | grep -qx "$NETNS"; then
    note "removing a leftover network namespace $NETNS"
    ip netns del "$NETNS"
fi
ip netns add "$NETNS"
ip -n "$NETNS" link set lo up

# Enter only the network namespace. (`ip netns exec` would also remount /sys,
# which hides the cgroup mounts runc, crun and tupper-ns need.)
in_netns() { nsenter --net="/run/netns/$NETNS" -- "$@"; }
# As the unprivileged user: no capabilities, an empty environment but for PATH
# and the runtime directory.
user_cmd=(env -i PATH=/usr/local/bin:/usr/bin:/bin XDG_RUNTIME_DIR="$xdg"
    setpriv --reuid="$BENCH_USER" --regid="$BENCH_USER" --init-groups --inh-caps=-all --)
as_user() { in_netns "${user_cmd[@]}" "$@"; }

# --- tupperware, in the benchmark's own prefix ---------------------------------------

if [ -n "$TRACE_DIR" ]; then
    mkdir -p "$TRACE_DIR" || die "--trace: cannot create $TRACE_DIR"
    TRACE_DIR=$(cd "$TRACE_DIR" && pwd)
fi

if [ "$PEERS_ONLY" = 0 ]; then
    installed=1
    remove_store # a fresh store every time (install.sh creates it)
    note "building and installing tupperware into $PREFIX (store $STORE, state $STATE)"
    "$repo/packaging/install.sh" --prefix "$PREFIX" --sysconfdir "$SYSCONF" --store "$STORE" \
        --state-dir "$STATE" --image-size 4G --user "$BENCH_USER" --force-config >/dev/null
    [ -x "$SUPERVISOR" ] || die "install.sh left no $SUPERVISOR"
    # Issue 9: every run creates its container's cgroups beneath a parent per
    # hierarchy; put the parents beneath this script's own cgroup in each
    # (the memory cgroup of a hybrid host need not be "/"), removed on exit.
    # shellcheck source=tests/cgroup-parents.sh
    . "$repo/tests/cgroup-parents.sh"
    cgroup_parents "$CG_NAME" >>"$SYSCONF/tupperware.toml"
fi

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

# --- timings ---------------------------------------------------------------------

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

# --- images (issue 10): import against tar -x, start from a big image, re-import ---

# Two OCI layouts written here with uncompressed layers (so an import's work is
# hashing and extracting, like tar -x's): "small", the busybox layer and a
# 4 MiB layer (about 5 MB), and "big", the busybox layer and four 256 MiB
# layers (about 1 GB). Layer data is random: nothing becomes a hole.
images_summary=()
if [ "$PEERS_ONLY" = 0 ] && [ "$NO_IMAGES" = 0 ]; then
    printf '\n== images (issue 10)\n'
    median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
    now_ns() { date +%s%N; }
    blob() { # blob DIR FILE: move FILE into DIR's blobs; print its hex digest
        local h
        h=$(sha256sum "$2" | cut -d' ' -f1)
        mv "$2" "$1/blobs/sha256/$h"
        printf '%s' "$h"
    }
    oci_layout() { # oci_layout DIR MIB_PER_LAYER LAYERS: prints the layer blob paths
        local dir=$1 mib=$2 n=$3 i h diffs="" layers="" cfg man
        mkdir -p "$dir/blobs/sha256" "$work/layer-src"
        printf '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
        cp "$tarball" "$work/layer.tar"
        for ((i = 0; i <= n; i++)); do
            if [ "$i" -gt 0 ]; then
                mkdir "$work/layer-src/data$i"
                head -c "${mib}M" /dev/urandom >"$work/layer-src/data$i/blob"
                tar -C "$work/layer-src" --owner=0 --group=0 --numeric-owner -cf "$work/layer.tar" "data$i"
                rm -rf "$work/layer-src/data$i"
            fi
            h=$(blob "$dir" "$work/layer.tar")
            echo "$dir/blobs/sha256/$h"
            diffs+="${diffs:+,}\"sha256:$h\""
            layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"sha256:$h\",\"size\":$(stat -c %s "$dir/blobs/sha256/$h")}"
        done
        printf '{"architecture":"%s","os":"linux","config":{"Cmd":["true"]},"rootfs":{"type":"layers","diff_ids":[%s]}}' \
            "$(dpkg --print-architecture)" "$diffs" >"$work/config.json"
        cfg=$(stat -c %s "$work/config.json")
        h=$(blob "$dir" "$work/config.json")
        printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
            "$h" "$cfg" "$layers" >"$work/manifest.json"
        man=$(stat -c %s "$work/manifest.json")
        h=$(blob "$dir" "$work/manifest.json")
        printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s}]}' \
            "$h" "$man" >"$dir/index.json"
    }
    oci_layout "$work/small" 4 1 >/dev/null
    mapfile -t big_layers < <(oci_layout "$work/big" 256 4)
    chmod -R a+rX "$work/small" "$work/big"
    big_bytes=$(stat -c %s "${big_layers[@]}" | awk '{ s += $1 } END { print s }')
    note "big image: ${#big_layers[@]} layers, $big_bytes bytes of uncompressed tar"

    # Import throughput: a fresh import of "big" (no layer present) against
    # tar -x of the same layer tars, in order, into a plain directory on the
    # same btrfs filesystem (as root). Three of each, medians.
    plain=$STORE/.bench-plain
    imp=() tarx=()
    for i in 1 2 3; do
        as_user "$SUPERVISOR" image rm big >/dev/null 2>&1 || true
        as_user "$SUPERVISOR" image prune >/dev/null 2>&1 || true
        sync
        t0=$(now_ns)
        as_user "$SUPERVISOR" image load "$work/big" big >/dev/null || { note "image load of big failed"; break; }
        imp+=($(( ($(now_ns) - t0) / 1000000 )))
        rm -rf "$plain"
        mkdir "$plain"
        sync
        t0=$(now_ns)
        for l in "${big_layers[@]}"; do tar --numeric-owner -xf "$l" -C "$plain"; done
        tarx+=($(( ($(now_ns) - t0) / 1000000 )))
        rm -rf "$plain"
        printf 'run %s: image load %s ms, tar -x %s ms\n' "$i" "${imp[-1]}" "${tarx[-1]}"
    done
    if [ "${#imp[@]}" -gt 0 ]; then
        imp_ms=$(printf '%s\n' "${imp[@]}" | median)
        tarx_ms=$(printf '%s\n' "${tarx[@]}" | median)
        images_summary+=("$(awk -v b="$big_bytes" -v i="$imp_ms" -v t="$tarx_ms" 'BEGIN {
            printf "import of 1 GB (5 uncompressed layers): median %d ms = %.0f MB/s; tar -x of the same layers: %d ms = %.0f MB/s; ratio %.2fx (goal >= 0.8x)",
                i, b / i / 1000, t, b / t / 1000, t / i }')")
    fi
    # The image whose layers are all present: a second load of "big".
    as_user "$SUPERVISOR" image load "$work/small" small >/dev/null || note "image load of small failed"
    bench image-load-present "image load of the 1 GB image again: every layer present, a new image snapshot" \
        as_user :: "$SUPERVISOR image load $work/big big"
    # Start from the 1 GB image against the 5 MB one: one snapshot either way.
    bench tupper-small-image "run --rm --network none of the 5 MB OCI image (2 layers)" \
        as_user :: "$SUPERVISOR run --rm --network none small true"
    bench tupper-big-image "run --rm --network none of the 1 GB OCI image (5 layers)" \
        as_user :: "$SUPERVISOR run --rm --network none big true"
    for n in image-load-present tupper-small-image tupper-big-image; do
        [ -e "$results/$n.json" ] || continue
        images_summary+=("$(jq -r --arg n "$n" '"\($n): median \(.results[0].median * 1000 | floor) ms (\(.results | length) command, \(.results[0].times | length) runs)"' "$results/$n.json")")
    done
    printf '\nimages (issue 10); goals: import >= 0.8x tar -x, start from 1 GB = from 5 MB, second import < 100 ms\n'
    printf '%s\n' "${images_summary[@]}"
    if [ "$IMAGES_ONLY" = 1 ]; then
        exit 0
    fi
fi

if [ "$PEERS_ONLY" = 0 ]; then
    note "importing the busybox image for $BENCH_USER"
    as_user "$SUPERVISOR" image import busybox "$tarball" >/dev/null ||
        note "image import failed: the tupperware runs below will fail too"
    bench tupper-none "user ns + own pid/mount/uts/ipc/net ns (lo only), btrfs snapshot; unprivileged" \
        as_user :: "$SUPERVISOR run --rm --network none busybox true"
    bench tupper-bridge "as tupper-none + veth on bridge, address lease, routes; unprivileged" \
        as_user :: "$SUPERVISOR run --rm --network bridge busybox true"
    # Issue 8: returns once the command runs; its monitor removes it on exit.
    bench tupper-detach "as tupper-none, run -d: returns once the command was executed" \
        as_user :: "$SUPERVISOR run -d --rm --network none busybox true"
fi

# --- the per-container monitor's memory (issue 8) -----------------------------------

# VmRSS of the monitor (the parent of each container's init, from `inspect`)
# with its container running: the median over a few containers.
monitor_rss=
if [ "$PEERS_ONLY" = 0 ]; then
    printf '\n== monitor resident set\n'
    rss=()
    for i in 1 2 3 4 5; do
        as_user "$SUPERVISOR" run -d --name "tw-bench-rss-$i" --network none busybox sleep 60 >/dev/null ||
            { note "run -d failed: no monitor measurement"; break; }
        init=$(as_user "$SUPERVISOR" inspect "tw-bench-rss-$i" | jq -r '.[0].state.pid')
        mon=$(awk '{ sub(/.*\) /, ""); print $2 }' "/proc/$init/stat")
        kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$mon/status")
        printf 'container %s: init %s, monitor %s, VmRSS %s kB\n' "$i" "$init" "$mon" "$kb"
        rss+=("$kb")
    done
    as_user "$SUPERVISOR" rm -f tw-bench-rss-1 tw-bench-rss-2 tw-bench-rss-3 tw-bench-rss-4 tw-bench-rss-5 \
        >/dev/null 2>&1 || true
    [ "${#rss[@]}" -eq 0 ] ||
        monitor_rss=$(printf '%s\n' "${rss[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
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
bench bwrap "bwrap --unshare-all (user/pid/net/ipc/uts/cgroup ns), ro rootfs, no cgroup; unprivileged" \
    as_user :: "bwrap --unshare-all --ro-bind $bundle/rootfs / --proc /proc --dev /dev true"

# --- processes and executions of one run --------------------------------------------

# Counted twice, by two independent means, on one run each:
#
# perf (the figures reported): the kernel's tracepoints task:task_newtask (a
# new task and its clone flags; CLONE_THREAD, 0x10000, marks a thread rather
# than a process), sched:sched_process_exec (a successful execve and its file)
# and sched:sched_process_exit, recorded system-wide (-a) while the command
# runs; the run's tasks are then the tree that descends from the task that
# exec'd tupper-supervisor, whatever their namespaces. System-wide because a
# per-task perf event does not follow a process into the exec of a binary with
# file capabilities (the kernel drops counters when a process becomes
# non-dumpable), so it would miss every helper and all they start. perf does
# not touch the run: helpers get their capabilities as usual.
#
# strace -f as root (the cross-check): execve, clone, clone3, fork and vfork of
# the same tree. Tracing keeps the helpers' file capabilities because the tracer
# holds CAP_SYS_PTRACE in the initial user namespace (a tracer without it would
# make them exec unprivileged, and the run would fail). It also sees the failed
# execve calls (a PATH search), which the exec tracepoint does not.
#
# Both start counting at the exec of tupper-supervisor: nsenter, env and
# setpriv before it exec in place and create nothing.
counts=()
cross=()
count_run() { # count_run NAME NETWORK
    local name=$1 net=$2 line
    printf '\n== %s: processes and executions of one run\n' "$name"
    if ! in_netns perf record -q -a -o "$work/$name.perf" -e task:task_newtask \
        -e sched:sched_process_exec -e sched:sched_process_exit -- \
        "${user_cmd[@]}" "$SUPERVISOR" run --rm --network "$net" busybox true; then
        note "$name: the recorded run failed; no counts"
        return 0
    fi
    # perf script lines: "PID/TID  EVENT: FIELDS", in time order.
    line=$(perf script -i "$work/$name.perf" -F pid,tid,event,trace 2>/dev/null |
        awk -v sup="$SUPERVISOR" -v lib="$LIBEXEC/" -v name="$name" '
        function field(key,   i) {
            for (i = 3; i <= NF; i++) if (index($i, key "=") == 1) return substr($i, length(key) + 2)
            return ""
        }
        function is_thread(hex,   d) { # bit 16 of a hex number: the 5th digit from the right is odd
            if (length(hex) < 5) return 0
            d = index("0123456789abcdef", tolower(substr(hex, length(hex) - 4, 1))) - 1
            return d % 2
        }
        {
            split($1, id, "/"); tid = id[2]; ev = $2
            if (ev == "sched:sched_process_exec:") {
                file = field("filename")
                if (!started && file == sup) { started = 1; mine[tid] = 1 }
                if (!(tid in mine)) next
                execs++
                n = file; sub(/.*\//, "", n)
                if (index(file, lib) == 1) helper[n]++; else other[n]++
            } else if (ev == "task:task_newtask:") {
                if (!(tid in mine)) next
                mine[field("pid")] = 1
                if (is_thread(field("clone_flags"))) threads++; else procs++
            } else if (ev == "sched:sched_process_exit:") {
                delete mine[tid]   # a pid may be reused later by someone else
            }
        }
        function list(a,   k, s) {
            s = ""
            for (k in a) s = s (s == "" ? "" : ", ") k " " a[k]
            return s == "" ? "none" : s
        }
        END {
            if (!started) exit 1
            printf "%-14s %5d %7d %5d  helpers: %s; other: %s\n", name, procs, threads, execs, list(helper), list(other)
        }') || { note "$name: no exec of $SUPERVISOR recorded; no counts"; return 0; }
    counts+=("$line")
    printf '%s\n' "$line"

    # The cross-check with strace.
    if ! in_netns strace -f -qq -e trace=execve,clone,clone3,fork,vfork -o "$work/$name.strace" -- \
        "${user_cmd[@]}" "$SUPERVISOR" run --rm --network "$net" busybox true; then
        note "$name: the traced run failed (did tracing cost the helpers their capabilities?)"
        return 0
    fi
    line=$(awk -v sup="$SUPERVISOR" -v name="$name" '
        { pid = $1; l = $0 }
        / <unfinished \.\.\.>$/ { pending[pid] = l; next }
        /<\.\.\. [a-z0-9]+ resumed>/ { l = pending[pid] " " l; delete pending[pid] }
        {
            call = l; sub(/^[0-9]+ +(<\.\.\. )?/, "", call); sub(/\(.*/, "", call)
            r = l; if (!sub(/.*\) += /, "", r)) next
            if (call == "execve") {
                if (!started && index(l, "execve(\"" sup "\"") && r ~ /^0/) started = 1
                if (!started) next
                calls++; if (r ~ /^0/) ok++
            } else if (started && (call == "clone" || call == "clone3" || call == "fork" || call == "vfork") && r ~ /^[1-9]/) {
                if (l ~ /CLONE_THREAD/) threads++; else procs++
            }
        }
        END {
            if (!started) exit 1
            printf "%-14s %5d %7d %5d  (strace; execve calls including failed ones: %d)\n", name, procs, threads, ok, calls
        }' "$work/$name.strace") || { note "$name: strace saw no exec of $SUPERVISOR"; return 0; }
    cross+=("$line")
    printf '%s\n' "$line"
}

if [ "$PEERS_ONLY" = 0 ]; then
    count_run tupper-none none
    count_run tupper-bridge bridge
fi

# --- report -------------------------------------------------------------------

[ "${#names[@]}" -gt 0 ] || die "every benchmark failed"
median_ms() { jq -r '.results[0].median * 1000' "$results/$1.json"; }
# CPU time (user + system, mean) of the command and the children it waited for:
# far less sensitive than wall time to other work on the machine.
cpu_ms() { jq -r '(.results[0].user + .results[0].system) * 1000' "$results/$1.json"; }
crun_ms=
for n in "${names[@]}"; do [ "$n" = crun ] && crun_ms=$(median_ms crun); done

printf '\nmedian wall time of "true" in a new container, %d runs after %d warm-up, inside netns %s\n' \
    "$RUNS" "$WARMUP" "$NETNS"
printf 'load average at the end: %s (2 busy cores or more make every number noisier)\n' \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-14s %10s %9s %8s  %s\n' command "median ms" "vs crun" "cpu ms" "what runs"
for i in "${!names[@]}"; do
    n=${names[$i]}
    ms=$(median_ms "$n")
    ratio=-
    [ -z "$crun_ms" ] || ratio=$(awk -v a="$ms" -v b="$crun_ms" 'BEGIN { printf "%.2fx", a / b }')
    printf '%-14s %10.1f %9s %8.1f  %s\n' "$n" "$ms" "$ratio" "$(cpu_ms "$n")" "${notes[$i]}"
done
cat <<EOF

Compared: the same busybox rootfs (packaging/make-busybox-image.sh) running \`true\`.
crun and runc use runc's default spec (terminal off), which keeps a network
namespace with only lo: comparable to \`tupper-supervisor run --network none\`;
they run as root without a user namespace, while tupperware runs as $BENCH_USER
with one. No peer sets up bridge networking (that needs CNI); tupper-bridge
shows what tupperware's own veth/bridge/lease step adds. "cpu ms" is the mean
user + system time of the command and the children it waited for (work the
kernel defers to its own threads, such as tearing down a network namespace, is
not in it); on a busy machine it moves much less than the wall time.
EOF

if [ -n "$TRACE_DIR" ] && [ "$PEERS_ONLY" = 0 ]; then
    # Issue 11: where one bridge run's time goes (every thread, with the time
    # spent in each system call). strace runs as root, so the helpers keep
    # their file capabilities under it.
    if in_netns strace -f -tt -T -o "$TRACE_DIR/tupper-bridge.strace" -- \
        "${user_cmd[@]}" "$SUPERVISOR" run --rm --network bridge busybox true; then
        note "trace of one bridge run: $TRACE_DIR/tupper-bridge.strace"
    else
        note "the traced bridge run failed"
    fi
fi

if [ -n "$monitor_rss" ]; then
    printf '\nper-container monitor: median VmRSS %s kB with its container running (goal: at most 1024 kB)\n' \
        "$monitor_rss"
    # shellcheck disable=SC2016 # the backquotes are text
    printf '`run -d` against `run --rm`: see tupper-detach and tupper-none above\n'
fi

if [ "${#counts[@]}" -gt 0 ]; then
    # shellcheck disable=SC2016 # the backquotes are text
    printf '\nwhat one `tupper-supervisor run --rm ... busybox true` costs, from the exec of the\n'
    printf 'supervisor on (perf; then the same counted by strace, on another run)\n'
    printf '%-14s %5s %7s %5s  %s\n' command procs threads execs "successful executions by program"
    printf '%s\n' "${counts[@]}" "${cross[@]}"
fi
