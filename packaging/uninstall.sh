#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Remove what packaging/install.sh installed, given the same options:
#
#   sudo packaging/uninstall.sh [--prefix P] [--sysconfdir D] [--keep-config] ...
#
# Removes P/bin/tupper-supervisor, the helpers in P/libexec/tupperware (and the
# directory if it is then empty) and D/tupperware.toml and D/policy.toml
# (unless --keep-config).
# It never touches the store (images and containers), the helpers' state
# directory, the users' subordinate id ranges or the build directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=options.sh
. "$here/options.sh"
parse_options "$@"
[ "$FORCE_CONFIG" = 0 ] || die "--force-config is an install option"
require_root "$@"

removed=()
remove_file() {
    if [ -e "$1" ] || [ -L "$1" ]; then
        rm -f -- "$1"
        removed+=("$1")
    fi
}

remove_file "$BINDIR/tupper-supervisor"
for h in "${HELPERS[@]}"; do
    remove_file "$LIBEXECDIR/$h"
    remove_file "$LIBEXECDIR/$h.tmp"
done
# The default image (issue 12).
DATADIR=$PREFIX/share/tupperware
[ "$PREFIX" = / ] && DATADIR=/share/tupperware
remove_file "$DATADIR/images/busybox.tar"
rmdir -- "$DATADIR/images" "$DATADIR" 2>/dev/null || true
if [ -d "$LIBEXECDIR" ]; then
    if rmdir -- "$LIBEXECDIR" 2>/dev/null; then
        removed+=("$LIBEXECDIR/")
    else
        note "left $LIBEXECDIR: it holds files install.sh did not put there"
    fi
fi

if [ "$KEEP_CONFIG" = 1 ]; then
    if [ -e "$CONFIG" ]; then note "kept $CONFIG (--keep-config)"; fi
    if [ -e "$SYSCONFDIR/policy.toml" ]; then note "kept $SYSCONFDIR/policy.toml (--keep-config)"; fi
else
    remove_file "$CONFIG"
    remove_file "$SYSCONFDIR/policy.toml"
    if [ -d "$SYSCONFDIR" ] && [ "$SYSCONFDIR" != / ] && [ "$SYSCONFDIR" != /etc ]; then
        if rmdir -- "$SYSCONFDIR" 2>/dev/null; then removed+=("$SYSCONFDIR/"); fi
    fi
fi

# Issue 11: tupper-net's NAT table (outbound masquerade, published ports) in
# this network namespace, if there is one; nothing else of the ruleset.
if command -v nft >/dev/null 2>&1 && nft list table ip tupperware >/dev/null 2>&1; then
    if nft delete table ip tupperware; then
        removed+=("nft table ip tupperware")
    else
        note "could not delete the nft table ip tupperware"
    fi
fi

if [ "${#removed[@]}" -eq 0 ]; then
    note "nothing to remove under $PREFIX and $SYSCONFDIR"
else
    echo "tupperware uninstalled; removed:"
    printf '  %s\n' "${removed[@]}"
fi
echo "kept: the store ($STORE), the helper state ($STATE_DIR) and users' subordinate id ranges;"
echo "      remove the store with: umount $STORE 2>/dev/null; rm -rf $STORE  (after checking it is yours)"
