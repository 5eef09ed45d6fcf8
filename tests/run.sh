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
# tests, for iterating on end-to-end tests; TUPPER_E2E_FILTER narrows the
# end-to-end tests by name. Neither is allowed under CI=true: there the whole
# suite runs, and anything it needs that is missing is a failure, not a skip.
TEST_USER=${TUPPER_TEST_USER:-tuppertest}
NORANGE_USER=${TUPPER_TEST_NORANGE_USER:-tuppernorange}
# A second user with subordinate ids: the other party of the hostile network tests.
SECOND_USER=${TUPPER_TEST_SECOND_USER:-${TEST_USER}b}
HELPER_TEST_USER=${TUPPER_TEST_HELPER_USER:-tupdev}   # the helpers' own privileged tests run as this user

step() { printf '\n== %s\n' "$*"; }
die() { printf 'tests/run.sh: FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it creates users, a network namespace and a test store)"
QUICK=${TUPPER_TEST_QUICK:-0}
if [ "${CI:-}" = true ]; then
    [ "$QUICK" != 1 ] || die "CI=true: TUPPER_TEST_QUICK=1 would skip tests; unset it"
    [ -z "${TUPPER_E2E_FILTER:-}" ] || die "CI=true: TUPPER_E2E_FILTER would skip tests; unset it"
fi
case "$STORE" in
    /var/lib/tupperware | /var/lib/tupperware/*) die "the test store may not be the production store ($STORE)" ;;
esac

# The helpers' tests must never touch the production store nor leave binaries
# with file capabilities in /tmp: what is there now is compared at the end.
PROD_STORE=/var/lib/tupperware
prod_store_state() {
    if [ -e "$PROD_STORE" ]; then
        printf 'exists; '
        findmnt -n -o SOURCE "$PROD_STORE" 2>/dev/null || printf 'not mounted\n'
    else
        printf 'absent\n'
    fi
}
prod_before=$(prod_store_state)
tmp_caps() { getcap -r /tmp 2>/dev/null | sort || true; }

step "system packages"
# shellcheck source=packaging/lib.sh
. "$repo/packaging/lib.sh"
ensure_packages
ensure_rust

step "preflight"
# Everything the suite needs, checked up front so that a missing piece is one
# clear failure here rather than a confusing one (or a skip) later.
missing=()
for c in cargo btrfs busybox findmnt getcap getent ip losetup mmdebstrap newgidmap newuidmap nft \
    setcap setpriv stat unshare useradd; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
done
[ "${#missing[@]}" = 0 ] || die "missing commands: ${missing[*]}"
[ -x /bin/busybox ] || die "/bin/busybox missing (package busybox-static)"
[ "$(cat /proc/sys/user/max_user_namespaces)" -gt 0 ] || die "user namespaces are disabled (user.max_user_namespaces is 0)"
if [ -e /proc/sys/kernel/apparmor_restrict_unprivileged_userns ] &&
    [ "$(cat /proc/sys/kernel/apparmor_restrict_unprivileged_userns)" != 0 ]; then
    die "kernel.apparmor_restrict_unprivileged_userns is set: the containers need user namespaces"
fi
grep -qw btrfs /proc/filesystems || modprobe btrfs 2>/dev/null || die "no btrfs in this kernel"
[ -e /dev/loop-control ] || die "no /dev/loop-control: the store is a loop-mounted image"
tmp_caps_before=$(tmp_caps)
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

step "README capability table = each helper's --print-caps"
# The one list of capabilities is in the code; install.sh installs what
# --print-caps says, and the README's table must say the same.
for h in tupper-storage tupper-ns tupper-net; do
    want=$("$PREFIX/libexec/tupperware/$h" --print-caps) || die "$h --print-caps failed"
    want=$(printf '%s\n' "${want%=p}" | tr , '\n' | LC_ALL=C sort)
    # The table rows of $h: from its first row up to the next helper's row.
    listed=$(awk -F'|' -v h=" \`$h\` " '
        $2 == h { on = 1 }
        on && $2 ~ /tupper-/ && $2 != h { on = 0 }
        on && /^\|/ { print $3 }
        on && !/^\|/ { on = 0 }' "$repo/README.md" | grep -o 'cap_[a-z_]*' | LC_ALL=C sort)
    [ "$listed" = "$want" ] ||
        die "README's capability table for $h lists [$(echo $listed)] but $h --print-caps says [$(echo $want)]"
done

step "test driver"
# The one driver of the suite (tests/src/bin/drive.rs), where the test users
# can execute it. cargo says where it built it (target directories vary).
drive_built=$(cargo build -p tupper-integration --bin tupper-drive --locked --message-format=json-render-diagnostics |
    sed -n 's/.*"executable":"\([^"]*\/tupper-drive\)".*/\1/p' | tail -n1)
[ -n "$drive_built" ] && [ -x "$drive_built" ] || die "cargo did not report a built tupper-drive"
install -d -m 0755 "$PREFIX/test-bin"
install -m 0755 "$drive_built" "$PREFIX/test-bin/tupper-drive"
DRIVE=$PREFIX/test-bin/tupper-drive

if [ "$QUICK" != 1 ]; then
    step "helper tests: tupper-storage driven directly (root), tupper-ns with its file capabilities (as $HELPER_TEST_USER)"
    # Against the build installed above (its configuration names the test
    # store) and the one driver; what they create is removed below.
    SCRATCH=$PREFIX/test-scratch
    rm -rf "$SCRATCH"
    install -d -m 0755 "$SCRATCH"
    helper_uid=$(id -u "$HELPER_TEST_USER")
    subvols_before=$(btrfs subvolume list "$STORE" | sort)
    helper_env=(TUPPER_PREFIX="$PREFIX" TUPPER_STORE="$STORE" TUPPER_DRIVE="$DRIVE" TUPPER_SCRATCH="$SCRATCH"
        TUPPER_HELPER_USER="$HELPER_TEST_USER" TUPPER_NORANGE_USER="$NORANGE_USER")
    env "${helper_env[@]}" cargo test -p tupper-storage --locked --test helper -- --ignored
    env "${helper_env[@]}" cargo test -p tupper-ns --locked --test spawn -- --ignored
    # The bridge filter against the kernel, in a scratch network namespace.
    cargo test -p tupper-net --locked -- --ignored

    step "remove what the helper tests created"
    # tupper-storage's tests remove their images and containers themselves
    # (root's directories stay); tupper-ns's build container roots by hand.
    [ "$(btrfs subvolume list "$STORE" | sort)" = "$subvols_before" ] ||
        die "the helper tests left subvolumes in $STORE"
    rm -rf "$STORE/containers/$helper_uid" "$STORE/containers/0" "$STORE/images/0" "$SCRATCH"
    for d in "$STORE/containers/$helper_uid" "$STORE/containers/0" "$STORE/images/0" "$SCRATCH"; do
        [ ! -e "$d" ] || die "could not remove $d"
    done
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

step "Debian bookworm image for tests/tests/debian.rs (mmdebstrap, cached in $PREFIX/cache)"
# Built from the host's apt sources (the only network the suite uses, before
# any test runs), reused while its recipe is unchanged, and imported as the
# test user as a user would: the tarball as mmdebstrap wrote it.
debian_tar=
debian_skip=()
t0=$(date +%s)
if debian_tar=$("$repo/tests/make-debian-image.sh" "$PREFIX/cache"); then
    echo "Debian tarball ready in $(($(date +%s) - t0)) s: $debian_tar"
    t0=$(date +%s)
    as_user "$TEST_USER" "$PREFIX/bin/tupper-supervisor" image import debian "$debian_tar"
    echo "imported as debian in $(($(date +%s) - t0)) s"
elif [ "${CI:-}" = true ]; then
    die "could not build the Debian image with mmdebstrap (under CI=true the Debian battery is never skipped)"
else
    debian_tar=
    echo "tests/run.sh: SKIPPED: the Debian battery (tests/tests/debian.rs, tests named debian_*): mmdebstrap could not build the image" >&2
    debian_skip=(--skip debian_)
fi

# OCI test images (issue 10): umoci/skopeo layouts and archives built from
# the busybox tarball, cached under the prefix keyed by their recipe.
oci_images=$("$repo/tests/make-oci-images.sh" "$PREFIX/cache" "$PREFIX/busybox.tar")
export TUPPER_OCI_IMAGES="$oci_images"

step "end-to-end tests (as $TEST_USER, capabilities only on the helpers)"
getcap "$PREFIX"/libexec/tupperware/*
TUPPER_IT=1 TUPPER_PREFIX="$PREFIX" TUPPER_NETNS="$NETNS" TUPPER_USER="$TEST_USER" \
TUPPER_NORANGE_USER="$NORANGE_USER" TUPPER_SECOND_USER="$SECOND_USER" TUPPER_STORE="$STORE" TUPPER_STATE_DIR="$STATE" \
TUPPER_IMAGE_TAR="$PREFIX/busybox.tar" TUPPER_BRIDGE=tupper0 TUPPER_DEBIAN_TAR="$debian_tar" \
    cargo test -p tupper-integration --locked --tests -- --ignored --test-threads=1 "${debian_skip[@]}" ${TUPPER_E2E_FILTER:-}

step "nothing outside the test prefix and store"
prod_after=$(prod_store_state)
[ "$prod_after" = "$prod_before" ] ||
    die "the suite changed $PROD_STORE: before: $prod_before; after: $prod_after"
new_caps=$(comm -13 <(printf '%s\n' "$tmp_caps_before") <(tmp_caps))
[ -z "$new_caps" ] || die "the suite left binaries with file capabilities in /tmp: $new_caps"
echo "$PROD_STORE: $prod_after; no new file capabilities under /tmp"

step "all tests passed"
