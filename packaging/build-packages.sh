#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Build the .deb (dpkg-buildpackage + debhelper, debian/) and the .rpm
# (rpmbuild, packaging/rpm/tupperware.spec) from one release build:
#
#   packaging/build-packages.sh [--deb-only] OUTDIR
#
# Writes OUTDIR/tupperware_VERSION_ARCH.deb and OUTDIR/tupperware-VERSION-1.ARCH.rpm.
# Needs dpkg-dev, debhelper, busybox-static and rpm (installed when missing and
# running as root) and cargo >= 1.85. The binaries are compiled with
# /etc/tupperware and /usr/libexec/tupperware, so they are never mixed with a
# prefix build (packaging/install.sh).
set -euo pipefail

prog=${0##*/}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
die() { printf '%s: %s\n' "$prog" "$*" >&2; exit 1; }
note() { printf '%s: %s\n' "$prog" "$*"; }

rpm=1
case "${1:-}" in --deb-only) rpm=0; shift ;; esac
[ $# = 1 ] || die "usage: $prog [--deb-only] OUTDIR"
mkdir -p "$1"
out=$(cd "$1" && pwd)

need=(dpkg-dev debhelper busybox-static)
[ "$rpm" = 0 ] || need+=(rpm)
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing packages: ${missing[*]} (sudo apt-get install ${missing[*]})"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found (packaging/setup.sh installs Rust)"

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml")
deb_version=$(dpkg-parsechangelog -l "$repo/debian/changelog" -S Version)
[ "$version" = "$deb_version" ] ||
    die "Cargo.toml says version $version but debian/changelog says $deb_version: add a changelog entry"

# dpkg-buildpackage writes next to the source tree and into debian/: build in
# a copy of the tree, with one cargo target directory kept between builds.
work=$out/build
src=$work/tupperware-$version
rm -rf "$work"
mkdir -p "$src"
tar -C "$repo" --exclude=./target --exclude=./.git -cf - . | tar -C "$src" -xf -
export CARGO_TARGET_DIR=$repo/target/package
note "building the .deb (cargo target $CARGO_TARGET_DIR)"
(cd "$src" && dpkg-buildpackage -b -uc -us) || die "dpkg-buildpackage failed"
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
deb=tupperware_${version}_${arch}.deb
mv -f "$work/$deb" "$out/$deb"
note "wrote $out/$deb"

if command -v lintian >/dev/null 2>&1; then
    note "lintian"
    lintian --fail-on error,warning \
        "$out/$deb" || die "lintian found problems in $deb"
fi

if [ "$rpm" = 1 ]; then
    # The .rpm from the very files of the .deb (debian/tupperware).
    note "building the .rpm"
    rm -rf "$work/rpm"
    rpmbuild -bb --quiet \
        --define "_topdir $work/rpm" \
        --define "tw_version $version" \
        --define "tw_staging $src/debian/tupperware" \
        "$repo/packaging/rpm/tupperware.spec" || die "rpmbuild failed"
    rpmfile=$(find "$work/rpm/RPMS" -name "tupperware-$version-*.rpm" | head -n1)
    [ -n "$rpmfile" ] || die "rpmbuild wrote no package"
    mv -f "$rpmfile" "$out/"
    note "wrote $out/${rpmfile##*/}"
fi
rm -rf "$work"
