#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Build tupperware and install it with its file capabilities.
#
#   sudo packaging/install.sh [--prefix P] [--sysconfdir D] [--store S] [--state-dir R]
#                             [--image-size SZ] [--user U]... [--force-config]
#
# Installs P/bin/tupper-supervisor (no privilege) and the helpers in
# P/libexec/tupperware with capabilities in their PERMITTED set only, writes
# D/tupperware.toml (kept if present, unless --force-config), and gives each
# --user a subordinate id range of 65536 ids. Running it again is harmless.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=options.sh
. "$here/options.sh"
parse_options "$@"
[ "$KEEP_CONFIG" = 0 ] || die "--keep-config is an uninstall option"
require_root "$@"

SUBID_COUNT=65536
SUBID_MIN=100000

# --- tools -------------------------------------------------------------------

find_cargo() {
    local d
    command -v cargo >/dev/null 2>&1 && return 0
    for d in "${HOME:-/root}/.cargo/bin" /root/.cargo/bin; do
        if [ -x "$d/cargo" ]; then
            PATH="$d:$PATH"
            export PATH
            return 0
        fi
    done
    die "cargo not found in PATH, ~/.cargo/bin or /root/.cargo/bin; install Rust >= 1.85 (packaging/setup.sh does)"
}

for tool in setcap getcap; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool not found; install libcap2-bin (apt-get install libcap2-bin)"
done
command -v usermod >/dev/null 2>&1 || die "usermod not found; install passwd"
for u in "${USERS[@]}"; do
    id -u "$u" >/dev/null 2>&1 || die "--user $u: no such user"
    [ "$(id -u "$u")" != 0 ] || die "--user $u: root needs no subordinate ids"
done
find_cargo

# --- build -------------------------------------------------------------------

# One target dir per prefix, so a test-prefix build and the default build do
# not keep rebuilding each other (the paths are compiled in).
target_dir=$repo/target/install-$(printf '%s\n' "$PREFIX" | md5sum | cut -c1-8)
note "building release binaries (sysconfdir $SYSCONFDIR, libexecdir $LIBEXECDIR) in $target_dir"
(
    cd "$repo"
    TUPPER_SYSCONFDIR=$SYSCONFDIR TUPPER_LIBEXECDIR=$LIBEXECDIR CARGO_TARGET_DIR=$target_dir \
        cargo build --release --locked --bins -p tupper-supervisor "${HELPERS[@]/#/--package=}"
) || die "cargo build failed"
built=$target_dir/release
for b in tupper-supervisor "${HELPERS[@]}"; do
    [ -x "$built/$b" ] || die "build produced no $built/$b"
done

# The helpers' capabilities, permitted set only (=p): each helper raises one
# into its effective set only around the call that needs it. The one list is
# each helper's own `--print-caps` (its declared spec; it prints before doing
# anything else, so running it here as root is safe).
declare -A HELPER_CAPS=()
for h in "${HELPERS[@]}"; do
    caps=$("$built/$h" --print-caps) || die "$built/$h --print-caps failed"
    [[ "$caps" =~ ^cap_[a-z_]+(,cap_[a-z_]+)*=p$ ]] ||
        die "$built/$h --print-caps printed \"$caps\", not a setcap list of permitted capabilities"
    HELPER_CAPS[$h]=$caps
done

# --- binaries and capabilities -------------------------------------------------

# Install by copy-then-rename so a running binary is never modified in place.
install_bin() {
    local src=$1 dst=$2
    install -o root -g root -m 0755 "$src" "$dst.new.$$"
    mv -f "$dst.new.$$" "$dst"
}

install -d -o root -g root -m 0755 "$BINDIR"
install_bin "$built/tupper-supervisor" "$BINDIR/tupper-supervisor"
# The supervisor must hold nothing: clear caps a previous install may have left.
setcap -r "$BINDIR/tupper-supervisor" 2>/dev/null || true

install -d -o root -g root -m 0755 "$LIBEXECDIR"
chown root:root "$LIBEXECDIR"
chmod 0755 "$LIBEXECDIR"
if findmnt -n -o OPTIONS -T "$LIBEXECDIR" 2>/dev/null | tr , '\n' | grep -qx nosuid; then
    die "$LIBEXECDIR is on a nosuid mount, where the kernel ignores file capabilities; choose another --prefix"
fi
for h in "${HELPERS[@]}"; do
    caps=${HELPER_CAPS[$h]}
    install_bin "$built/$h" "$LIBEXECDIR/$h.tmp"
    if ! err=$(setcap "$caps" "$LIBEXECDIR/$h.tmp" 2>&1); then
        rm -f "$LIBEXECDIR/$h.tmp"
        fstype=$(stat -f -c %T "$LIBEXECDIR" 2>/dev/null || echo unknown)
        die "cannot set file capabilities on $LIBEXECDIR/$h ($err); the $fstype filesystem \
holding $LIBEXECDIR must support security xattrs (ext4, xfs, btrfs and tmpfs do) \
— choose another --prefix"
    fi
    mv -f "$LIBEXECDIR/$h.tmp" "$LIBEXECDIR/$h"
done

# Verify with getcap, which prints the capabilities in its own (numeric) order.
normalize_caps() {
    local list=${1%=*} flags=${1##*=}
    printf '%s=%s\n' "$(printf '%s\n' "${list//,/$'\n'}" | LC_ALL=C sort | paste -sd, -)" "$flags"
}
for h in "${HELPERS[@]}"; do
    want=${HELPER_CAPS[$h]}
    got=$(getcap "$LIBEXECDIR/$h" | awk '{print $NF}')
    if [ -z "$got" ] || [ "$(normalize_caps "$got")" != "$(normalize_caps "$want")" ]; then
        die "capabilities of $LIBEXECDIR/$h are \"${got:-none}\", expected \"$want\" (does the filesystem keep security xattrs?)"
    fi
done

# --- the default image (issue 12) ------------------------------------------------

# A user's first `run busybox` imports it (crates/runtime/src/default_image.rs
# looks in PREFIX/share/tupperware/images, beside PREFIX/libexec/tupperware).
DATADIR=$PREFIX/share/tupperware
[ "$PREFIX" = / ] && DATADIR=/share/tupperware
install -d -o root -g root -m 0755 "$DATADIR/images"
"$here/make-busybox-image.sh" "$DATADIR/images/busybox.tar.new.$$" >/dev/null ||
    die "could not build the default busybox image"
chmod 0644 "$DATADIR/images/busybox.tar.new.$$"
mv -f "$DATADIR/images/busybox.tar.new.$$" "$DATADIR/images/busybox.tar"

# --- configuration -------------------------------------------------------------

write_config() {
    local tmp
    install -d -o root -g root -m 0755 "$SYSCONFDIR"
    tmp=$(mktemp "$CONFIG.XXXXXX")
    sed -e "s|^path = .*|path = \"$STORE\"|" \
        -e "s|^image_size = .*|image_size = \"$IMAGE_SIZE\"|" \
        -e "s|^state_dir = .*|state_dir = \"$STATE_DIR\"|" \
        "$here/tupperware.toml" >"$tmp"
    # Check that every substitution landed.
    if ! grep -qx "path = \"$STORE\"" "$tmp" || ! grep -qx "image_size = \"$IMAGE_SIZE\"" "$tmp" ||
        ! grep -qx "state_dir = \"$STATE_DIR\"" "$tmp"; then
        rm -f "$tmp"
        die "could not render $here/tupperware.toml"
    fi
    chown root:root "$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$CONFIG"
}

if [ -e "$CONFIG" ] && [ "$FORCE_CONFIG" = 0 ]; then
    config_action="kept existing (use --force-config to overwrite)"
else
    if [ -e "$CONFIG" ]; then config_action="overwritten (--force-config)"; else config_action="written"; fi
    write_config
fi

# The policy: installed when there is none (an administrator's edits are kept).
POLICY=$SYSCONFDIR/policy.toml
if [ -e "$POLICY" ]; then
    policy_action="kept existing"
else
    install -o root -g root -m 0644 "$here/policy.toml" "$POLICY.new.$$"
    mv -f "$POLICY.new.$$" "$POLICY"
    policy_action="written (per-user limits)"
fi

# --- the store -------------------------------------------------------------------

# Only root creates the store (and formats its btrfs image with mkfs.btrfs);
# users' commands mount an existing store after a reboot but never create one.
# Any root command that needs the store creates it: `image ls` is harmless. It
# runs here, in the host's mount namespace, so the mount is everyone's.
store_path=$(sed -n 's/^path = "\(.*\)"/\1/p' "$CONFIG" | head -n1)
note "creating and mounting the store $store_path"
if ! err=$(cd / && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$BINDIR/tupper-supervisor" image ls 2>&1 >/dev/null); then
    die "cannot create the store $store_path: $err"
fi

# --- subordinate ids -----------------------------------------------------------

# Does $1 (login name) own a range of at least SUBID_COUNT ids in file $2?
has_range() {
    local user=$1 file=$2 uid
    uid=$(id -u "$user")
    [ -r "$file" ] || return 1
    awk -F: -v n="$user" -v u="$uid" -v c="$SUBID_COUNT" \
        '($1 == n || $1 == u) && $3 + 0 >= c { found = 1 } END { exit !found }' "$file"
}

# First SUBID_COUNT-aligned start above every range in /etc/subuid and /etc/subgid.
next_free_start() {
    local end
    end=$(cat /etc/subuid /etc/subgid 2>/dev/null |
        awk -F: 'NF >= 3 && $2 ~ /^[0-9]+$/ && $3 ~ /^[0-9]+$/ { e = $2 + $3; if (e > m) m = e }
                 END { print m + 0 }')
    local start=$(((end + SUBID_COUNT - 1) / SUBID_COUNT * SUBID_COUNT))
    [ "$start" -ge "$SUBID_MIN" ] || start=$(((SUBID_MIN + SUBID_COUNT - 1) / SUBID_COUNT * SUBID_COUNT))
    echo "$start"
}

subid_summary=()
for u in "${USERS[@]}"; do
    touch /etc/subuid /etc/subgid
    args=()
    need_uid=0 need_gid=0
    has_range "$u" /etc/subuid || need_uid=1
    has_range "$u" /etc/subgid || need_gid=1
    if [ $need_uid = 1 ] || [ $need_gid = 1 ]; then
        start=$(next_free_start)
        range="$start-$((start + SUBID_COUNT - 1))"
        [ $need_uid = 0 ] || args+=(--add-subuids "$range")
        [ $need_gid = 0 ] || args+=(--add-subgids "$range")
        usermod "${args[@]}" "$u" || die "usermod ${args[*]} $u failed"
        subid_summary+=("$u: added ${args[*]}")
    else
        subid_summary+=("$u: already has subordinate uid and gid ranges")
    fi
    if ! has_range "$u" /etc/subuid || ! has_range "$u" /etc/subgid; then
        die "$u still has no range of $SUBID_COUNT ids in /etc/subuid and /etc/subgid"
    fi
done

# --- summary -------------------------------------------------------------------

echo
echo "tupperware installed:"
printf '  %-52s %s\n' "$BINDIR/tupper-supervisor" "0755 root, no capabilities"
for h in "${HELPERS[@]}"; do
    printf '  %-52s %s\n' "$LIBEXECDIR/$h" "0755 root, $(getcap "$LIBEXECDIR/$h" | awk '{print $NF}')"
done
printf '  %-52s %s\n' "$DATADIR/images/busybox.tar" "the default image (each user's first run imports it)"
printf '  %-52s %s\n' "$CONFIG" "$config_action"
printf '  %-52s %s\n' "$POLICY" "$policy_action"
printf '  %-52s %s\n' "store" "$store_path (created and mounted; after a reboot the first command mounts it again)"
printf '  %-52s %s\n' "helper state" "$(sed -n 's/^state_dir = "\(.*\)"/\1/p' "$CONFIG" | head -n1)"
for s in "${subid_summary[@]}"; do
    printf '  subordinate ids   %s\n' "$s"
done
case ":$PATH:" in
    *":$BINDIR:"*) ;;
    *) echo "  note: $BINDIR is not in PATH" ;;
esac
