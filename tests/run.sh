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

# --- issue 12: what is tested, a prefix install or the .deb -----------------------
# TUPPER_TEST_INSTALL=prefix (the default when TUPPER_TEST_PREFIX is set):
# packaging/install.sh into PREFIX, so isolated runs can go side by side.
# TUPPER_TEST_INSTALL=deb (the default otherwise: README's command and .ci/run
# test what users get): build the .deb and the .rpm, install the .deb with apt-get, run the
# suite against /usr and /etc/tupperware as a freshly created user given a range
# the README's way, then purge it and check nothing is left. PREFIX then only
# holds the suite's own files (driver, scratch, cache).
if [ -n "${TUPPER_TEST_PREFIX:-}" ]; then
    INSTALL_MODE=${TUPPER_TEST_INSTALL:-prefix}
else
    INSTALL_MODE=${TUPPER_TEST_INSTALL:-deb}
fi
TESTDIR=$PREFIX
case "$INSTALL_MODE" in
    prefix) ;;
    deb)
        PREFIX=/usr
        SYSCONF=/etc/tupperware
        STATE=/run/tupperware   # the package's default helper state: purge must remove it
        ;;
    *) printf 'tests/run.sh: TUPPER_TEST_INSTALL must be prefix or deb, not %s\n' "$INSTALL_MODE" >&2; exit 1 ;;
esac
mapfile -t HELPERS < <(grep -v -e '^#' -e '^$' "$repo/packaging/helpers.list")
IMAGE_TAR=$PREFIX/share/tupperware/images/busybox.tar   # the default image both installs ship

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
# Issue 10 (engineer "pull"): tests/tests/registry.rs serves images with
# Debian's docker-registry inside the suite's network namespace and pushes
# them with skopeo (htpasswd and openssl for its authenticated and TLS
# registries). The package would start a host-wide registry service on
# install: a policy-rc.d that forbids starting services is in place for the
# install (an administrator's own one is left as it is), and afterwards
# nothing may listen on the registry's port on the host.
registry_packages=()
for p in docker-registry skopeo apache2-utils openssl; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || registry_packages+=("$p")
done
if [ "${#registry_packages[@]}" -gt 0 ]; then
    policy_rc=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy_rc" ]; then
        printf '#!/bin/sh\n# tupperware tests/run.sh: no services started during its install\nexit 101\n' >"$policy_rc"
        chmod 0755 "$policy_rc"
        own_policy=1
    fi
    echo "installing: ${registry_packages[*]}"
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${registry_packages[@]}" ||
        { [ "$own_policy" = 0 ] || rm -f "$policy_rc"; die "could not install ${registry_packages[*]}"; }
    [ "$own_policy" = 0 ] || rm -f "$policy_rc"
fi
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
    die "a host-wide docker-registry service is running: stop it (systemctl disable --now docker-registry)"
fi
if ss -Hltnp 2>/dev/null | grep -q 'docker-registry'; then
    die "a docker-registry listens on the host; the registry tests serve only inside $NETNS"
fi

step "preflight"
# Everything the suite needs, checked up front so that a missing piece is one
# clear failure here rather than a confusing one (or a skip) later.
missing=()
for c in cargo btrfs busybox findmnt getcap getent ip losetup mmdebstrap newgidmap newuidmap nft \
    setcap setpriv stat unshare useradd docker-registry skopeo htpasswd openssl; do
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

if [ "$INSTALL_MODE" = prefix ]; then
step "install into $PREFIX"
"$repo/packaging/install.sh" --prefix "$PREFIX" --sysconfdir "$SYSCONF" --store "$STORE" \
    --state-dir "$STATE" --image-size 4G --user "$TEST_USER" --user "$HELPER_TEST_USER" --user "$SECOND_USER" --force-config
else
# shellcheck source=tests/package.sh
. "$repo/tests/package.sh"
package_install
fi

step "registries: references without a registry go to loopback"
# Issue 10: `run` of an image not present pulls it (--pull missing). The suite
# must never reach a registry outside its namespaces: the default registry is
# a loopback port where nothing listens (the registry tests name theirs).
printf '\n[registries]\ndefault = "127.0.0.1:5999"\ninsecure = ["127.0.0.1:5999"]\n' >>"$SYSCONF/tupperware.toml"

step "cgroup parents below this run's own cgroups"
# Issue 9: tupper-cgroup creates user-<uid>/<id> beneath a parent per
# hierarchy; the suite puts it beneath its own cgroup in each (this host's
# memory cgroup is not "/"), and removes all of it at the end (trap).
CG_NAME=${NETNS}-cgroups
CG_DIRS=()
# shellcheck source=tests/cgroup-parents.sh
. "$repo/tests/cgroup-parents.sh"
cgroup_parents "$CG_NAME" >>"$SYSCONF/tupperware.toml"
cgroup_cleanup() {
    local d
    for d in "${CG_DIRS[@]}"; do
        [ -d "$d" ] || continue
        find "$d" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null || true
        rmdir "$d" 2>/dev/null || echo "tests/run.sh: could not remove cgroup $d" >&2
    done
}
cgroup_leftovers() {
    local d
    for d in "${CG_DIRS[@]}"; do
        find "$d" -mindepth 1 -type d
    done
}
# One exit trap from here on, for everything set up so far and later (the
# package's purge too: a run that fails in between must not leave the
# suite's .deb installed for the next run to trip over).
cleanup() {
    cgroup_cleanup
    ip netns del "$NETNS" 2>/dev/null || true
    ip netns del "${NETNS}-out" 2>/dev/null || true
    umount "$STORE" 2>/dev/null || true
    if [ "$INSTALL_MODE" = deb ]; then package_cleanup; fi
}
trap cleanup EXIT

step "README capability table = each helper's --print-caps"
# The one list of capabilities is in the code; install.sh installs what
# --print-caps says, and the README's table must say the same.
for h in "${HELPERS[@]}"; do
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
install -d -m 0755 "$TESTDIR/test-bin"
install -m 0755 "$drive_built" "$TESTDIR/test-bin/tupper-drive"
DRIVE=$TESTDIR/test-bin/tupper-drive

if [ "$QUICK" != 1 ]; then
    step "helper tests: tupper-storage driven directly (root), tupper-ns with its file capabilities (as $HELPER_TEST_USER)"
    # Against the build installed above (its configuration names the test
    # store) and the one driver; what they create is removed below.
    SCRATCH=$TESTDIR/test-scratch
    rm -rf "$SCRATCH"
    install -d -m 0755 "$SCRATCH"
    helper_uid=$(id -u "$HELPER_TEST_USER")
    subvols_before=$(btrfs subvolume list "$STORE" | sort)
    helper_env=(TUPPER_PREFIX="$PREFIX" TUPPER_STORE="$STORE" TUPPER_DRIVE="$DRIVE" TUPPER_SCRATCH="$SCRATCH"
        TUPPER_HELPER_USER="$HELPER_TEST_USER" TUPPER_NORANGE_USER="$NORANGE_USER")
    env "${helper_env[@]}" cargo test -p tupper-storage --locked --test helper -- --ignored
    env "${helper_env[@]}" cargo test -p tupper-ns --locked --test spawn -- --ignored --test-threads=1
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
ip netns del "$NETNS" 2>/dev/null || true
ip netns add "$NETNS"
ip -n "$NETNS" link set lo up
# Issue 11: an "outside" namespace that plays the internet, joined to the
# suite's host namespace by an uplink veth; the default route points there.
ip netns del "${NETNS}-out" 2>/dev/null || true
ip netns add "${NETNS}-out"
ip -n "${NETNS}-out" link set lo up
ip -n "$NETNS" link add tuplink0 type veth peer name tuwan0 netns "${NETNS}-out"
ip -n "$NETNS" addr add 192.0.2.1/24 dev tuplink0
ip -n "${NETNS}-out" addr add 192.0.2.254/24 dev tuwan0
ip -n "$NETNS" link set tuplink0 up
ip -n "${NETNS}-out" link set tuwan0 up
ip -n "$NETNS" route add default via 192.0.2.254

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
as_user "$TEST_USER" "$PREFIX/bin/tupper-supervisor" image import busybox "$IMAGE_TAR"
as_user "$TEST_USER" "$PREFIX/bin/tupper-supervisor" image ls
uid2=$(id -u "$SECOND_USER")
rm -rf "/tmp/tupperware-$uid2" "/run/user/$uid2/tupperware"
as_user "$SECOND_USER" "$PREFIX/bin/tupper-supervisor" image import busybox "$IMAGE_TAR" >/dev/null

step "Debian bookworm image for tests/tests/debian.rs (mmdebstrap, cached in $TESTDIR/cache)"
# Built from the host's apt sources (the only network the suite uses, before
# any test runs), reused while its recipe is unchanged, and imported as the
# test user as a user would: the tarball as mmdebstrap wrote it.
debian_tar=
debian_skip=()
t0=$(date +%s)
if debian_tar=$("$repo/tests/make-debian-image.sh" "$TESTDIR/cache"); then
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
oci_images=$("$repo/tests/make-oci-images.sh" "$TESTDIR/cache" "$IMAGE_TAR")
export TUPPER_OCI_IMAGES="$oci_images"

step "end-to-end tests (as $TEST_USER, capabilities only on the helpers)"
getcap "$PREFIX"/libexec/tupperware/*
TUPPER_IT=1 TUPPER_PREFIX="$PREFIX" TUPPER_NETNS="$NETNS" TUPPER_OUTSIDE_NETNS="${NETNS}-out" TUPPER_USER="$TEST_USER" \
TUPPER_NORANGE_USER="$NORANGE_USER" TUPPER_SECOND_USER="$SECOND_USER" TUPPER_STORE="$STORE" TUPPER_STATE_DIR="$STATE" \
TUPPER_IMAGE_TAR="$IMAGE_TAR" TUPPER_BRIDGE=tupper0 TUPPER_DEBIAN_TAR="$debian_tar" \
TUPPER_SYSCONFDIR="$SYSCONF" TUPPER_TEST_BIN="$TESTDIR/test-bin" \
    cargo test -p tupper-integration --locked --no-fail-fast --tests -- --ignored --test-threads=1 "${debian_skip[@]}" ${TUPPER_E2E_FILTER:-}

step "no cgroup left below the suite's parents"
left=$(cgroup_leftovers)
[ -z "$left" ] || die "the suite left cgroups behind: $left"

step "nothing outside the test prefix and store"
prod_after=$(prod_store_state)
[ "$prod_after" = "$prod_before" ] ||
    die "the suite changed $PROD_STORE: before: $prod_before; after: $prod_after"
new_caps=$(comm -13 <(printf '%s\n' "$tmp_caps_before") <(tmp_caps))
[ -z "$new_caps" ] || die "the suite left binaries with file capabilities in /tmp: $new_caps"
echo "$PROD_STORE: $prod_after; no new file capabilities under /tmp"

if [ "$INSTALL_MODE" = deb ]; then
    package_purge_and_check
fi

step "all tests passed"
