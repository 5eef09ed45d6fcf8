#!/usr/bin/env bash
# The whole test suite, as root on a Debian machine:
#   static checks, unit tests, then the end-to-end tests against a build
#   installed into a test prefix with its file capabilities, driven by an
#   unprivileged user inside a network namespace this script creates.
# Nothing outside the test prefix, the test store, the test users and the
# test network namespace is touched.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

# Overridable so that two checkouts can test side by side on one machine
# (each with its own prefix, store, state directory and network namespace).
PREFIX=${TUPPER_TEST_PREFIX:-/opt/tupperware-test}
SYSCONF=$PREFIX/etc
STORE=${TUPPER_TEST_STORE:-/var/lib/tupperware-test}
STATE=${TUPPER_TEST_STATE:-/run/tupperware-test}
NETNS=${TUPPER_TEST_NETNS:-tupper-test}
# TUPPER_TEST_QUICK=1 skips the static checks, unit tests and the helpers' own
# tests (they use the machine's default store), for iterating on end-to-end tests;
# TUPPER_E2E_FILTER narrows the end-to-end tests by name.
TEST_USER=${TUPPER_TEST_USER:-tuppertest}
NORANGE_USER=${TUPPER_TEST_NORANGE_USER:-tuppernorange}
# A second user with subordinate ids: the other party of the hostile network tests.
SECOND_USER=${TUPPER_TEST_SECOND_USER:-${TEST_USER}b}
HELPER_TEST_USER=${TUPPER_TEST_HELPER_USER:-tupdev}   # the helpers' own privileged tests run as this user

step() { printf '\n== %s\n' "$*"; }
die() { printf 'tests/run.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it creates users, a network namespace and a test store)"

step "system packages"
# shellcheck source=packaging/lib.sh
. "$repo/packaging/lib.sh"
ensure_packages
ensure_rust

QUICK=${TUPPER_TEST_QUICK:-0}
if [ "$QUICK" != 1 ]; then
    step "static checks"
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

    step "unit tests"
    cargo test --workspace --locked
fi

step "test users"
id "$TEST_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$TEST_USER"
id "$HELPER_TEST_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$HELPER_TEST_USER"
id "$SECOND_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$SECOND_USER"
id "$NORANGE_USER" >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin "$NORANGE_USER"
# The second user must have no subordinate ids at all.
sed -i "/^$NORANGE_USER:/d" /etc/subuid /etc/subgid

step "fresh store"
# Every run starts from an empty store, as on a clean machine; install.sh
# creates it (as root: only the administrator creates the store).
umount "$STORE" 2>/dev/null || true
rm -rf "$STORE" "$STATE"

step "install into $PREFIX"
"$repo/packaging/install.sh" --prefix "$PREFIX" --sysconfdir "$SYSCONF" --store "$STORE" \
    --state-dir "$STATE" --image-size 4G --user "$TEST_USER" --user "$HELPER_TEST_USER" --user "$SECOND_USER" --force-config
"$repo/packaging/make-busybox-image.sh" "$PREFIX/busybox.tar"
chmod 0644 "$PREFIX/busybox.tar"

if [ "$QUICK" != 1 ]; then
    step "helper tests: tupper-storage driven directly (root), tupper-ns with its file capabilities (as $HELPER_TEST_USER)"
    # These use the compiled-in default store (/var/lib/tupperware).
    TUPPER_STORAGE_TESTS=1 cargo test -p tupper-storage --locked --test helper -- --ignored
    TUPPER_NS_TESTS=1 cargo test -p tupper-ns --locked --test spawn -- --ignored
    # The bridge filter against the kernel, in a scratch network namespace.
    cargo test -p tupper-net --locked -- --ignored
fi

step "network namespace $NETNS"
cleanup() {
    ip netns del "$NETNS" 2>/dev/null || true
    umount "$STORE" 2>/dev/null || true
}
trap cleanup EXIT
ip netns del "$NETNS" 2>/dev/null || true
ip netns add "$NETNS"
ip -n "$NETNS" link set lo up

as_user() {
    ip netns exec "$NETNS" setpriv --reuid="$1" --regid="$1" --init-groups --inh-caps=-all \
        --reset-env -- "${@:2}"
}

step "fresh state for $TEST_USER"
# install.sh created and mounted the store as root, in the host's mount
# namespace (each `ip netns exec` runs in a private one, where a mount would
# not outlive it).
findmnt "$STORE"
uid=$(id -u "$TEST_USER")
home=$(getent passwd "$TEST_USER" | cut -d: -f6)
rm -rf "/tmp/tupperware-$uid" "/run/user/$uid/tupperware" "$home/.local/state/tupperware"
as_user "$TEST_USER" "$PREFIX/bin/tupper-supervisor" image rm busybox >/dev/null 2>&1 || true
as_user "$TEST_USER" "$PREFIX/bin/tupper-supervisor" image import busybox "$PREFIX/busybox.tar"
as_user "$TEST_USER" "$PREFIX/bin/tupper-supervisor" image ls
uid2=$(id -u "$SECOND_USER")
rm -rf "/tmp/tupperware-$uid2" "/run/user/$uid2/tupperware"
as_user "$SECOND_USER" "$PREFIX/bin/tupper-supervisor" image import busybox "$PREFIX/busybox.tar" >/dev/null

step "end-to-end tests (as $TEST_USER, capabilities only on the helpers)"
getcap "$PREFIX"/libexec/tupperware/*
TUPPER_IT=1 TUPPER_PREFIX="$PREFIX" TUPPER_NETNS="$NETNS" TUPPER_USER="$TEST_USER" \
TUPPER_NORANGE_USER="$NORANGE_USER" TUPPER_SECOND_USER="$SECOND_USER" TUPPER_STORE="$STORE" TUPPER_STATE_DIR="$STATE" \
TUPPER_IMAGE_TAR="$PREFIX/busybox.tar" TUPPER_BRIDGE=tupper0 \
    cargo test -p tupper-integration --locked --tests -- --ignored --test-threads=1 ${TUPPER_E2E_FILTER:-}

step "all tests passed"
