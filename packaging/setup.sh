#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# From a fresh Debian machine to a running container, as root:
#
#   sudo ./packaging/setup.sh [INSTALL-OPTION]... [USER]
#
# Installs the system packages and (if no cargo >= 1.85 is found) Rust via
# rustup, creates USER if missing (default: $SUDO_USER, else "tupper"; never
# root), builds the .deb (packaging/build-packages.sh) and installs it with
# apt-get, gives USER a subordinate id range (usermod, as README tells an
# administrator), then runs a container as USER, with no privileges of its
# own (USER's first run imports the default busybox image the package ships),
# and exits with the container's status. With install options (e.g. --prefix)
# it builds and installs from source with packaging/install.sh instead.
# Running it again is harmless.
set -euo pipefail

prog=${0##*/}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { printf '%s: %s\n' "$prog" "$*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

usage() {
    cat <<EOF
usage: $prog [INSTALL-OPTION]... [USER]

  USER             the user who will run containers (default: \$SUDO_USER, else "tupper";
                   created with useradd -m if missing; never root)
  INSTALL-OPTION   passed to packaging/install.sh: --prefix P, --sysconfdir D, --store S,
                   --state-dir R, --image-size SZ, --force-config (see install.sh --help)
EOF
}

# --- arguments ---------------------------------------------------------------

install_opts=()
prefix=/usr
prefix_given=0
user=
while [ $# -gt 0 ]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --prefix | --sysconfdir | --store | --state-dir | --image-size)
            [ $# -ge 2 ] || die "$1 needs a value"
            if [ "$1" = --prefix ]; then prefix=$2; prefix_given=1; fi
            install_opts+=("$1" "$2")
            shift 2
            ;;
        --prefix=*) prefix=${1#*=}; prefix_given=1; install_opts+=("$1"); shift ;;
        --sysconfdir=* | --store=* | --state-dir=* | --image-size=* | --force-config)
            install_opts+=("$1"); shift ;;
        -*) usage >&2; die "unknown option: $1" ;;
        *)
            [ -z "$user" ] || die "only one USER may be given"
            user=$1
            shift
            ;;
    esac
done
user=${user:-${SUDO_USER:-tupper}}
prefix=${prefix%/}
supervisor=$prefix/bin/tupper-supervisor

[ "$(id -u)" = 0 ] || die "run as root: sudo $0 $*"
[ "$user" != root ] || die "containers are run by an ordinary user, not root; name one: sudo $0 USER"
[[ "$user" =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || die "\"$user\" is not a valid user name"
if id -u "$user" >/dev/null 2>&1 && [ "$(id -u "$user")" = 0 ]; then
    die "$user has uid 0; name an ordinary user"
fi

# --- system packages and Rust ------------------------------------------------------

step "system packages"
# shellcheck source=lib.sh
. "$here/lib.sh"
ensure_packages
step "Rust toolchain"
ensure_rust
cargo --version

# --- the user ------------------------------------------------------------------

step "user $user"
if id -u "$user" >/dev/null 2>&1; then
    echo "$user exists (uid $(id -u "$user"))"
else
    useradd -m -s /bin/bash "$user"
    echo "created $user (uid $(id -u "$user"))"
fi
uid=$(id -u "$user")

# --- install -------------------------------------------------------------------

if [ "${#install_opts[@]}" = 0 ]; then
    # What users get is what CI tests: the package.
    step "build the .deb and install it"
    pkg_out=$(cd "$here/.." && pwd)/target/packages
    rm -f "$pkg_out"/tupperware_*.deb
    "$here/build-packages.sh" --deb-only "$pkg_out"
    deb=$(find "$pkg_out" -maxdepth 1 -name 'tupperware_*.deb' | head -n1)
    [ -n "$deb" ] || die "build-packages.sh wrote no .deb"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$deb"
    step "subordinate ids for $user"
    give_subid_range "$user"
    grep "^$user:" /etc/subuid
else
    step "build and install from source"
    [ "$prefix_given" = 1 ] || prefix=/usr/local   # install.sh's default
    "$here/install.sh" "${install_opts[@]}" --user "$user"
fi
supervisor=$prefix/bin/tupper-supervisor

# Run a command as the user: no capabilities, a clean environment, cwd /.
# The supervisor finds its runtime directory itself when XDG_RUNTIME_DIR is unset.
as_user() {
    local env=(HOME="$(getent passwd "$user" | cut -d: -f6)" USER="$user" LOGNAME="$user"
        PATH="$prefix/bin:/usr/local/bin:/usr/bin:/bin" TERM="${TERM:-dumb}")
    if [ -d "/run/user/$uid" ] && [ "$(stat -c %u "/run/user/$uid")" = "$uid" ]; then
        env+=(XDG_RUNTIME_DIR="/run/user/$uid")
    fi
    (cd / && runuser -u "$user" -- env -i "${env[@]}" "$@")
}

# The default image: the package (or install.sh) ships busybox, and the
# user's first run imports it, saying so in one line.

# --- a container -----------------------------------------------------------------

step "a container, run by $user with no privileges of its own"
# shellcheck disable=SC2016 # $$ is for the container's shell
cmd=(run --rm --hostname tupperware busybox sh -c 'hostname; echo $$; ps; ip -4 addr show eth0; ip route')
printf '$ tupper-supervisor'
printf ' %q' "${cmd[@]}"
printf '\n'
status=0
as_user "$supervisor" "${cmd[@]}" || status=$?
if [ "$status" = 0 ]; then
    step "done: $user can now run containers with $supervisor"
else
    printf '\n%s: the container exited with status %d\n' "$prog" "$status" >&2
fi
exit "$status"
