# Options shared by packaging/install.sh and packaging/uninstall.sh.
# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables are read by the scripts that source this

# Defaults (packaging/tupperware.toml shows the same values).
PREFIX=/usr/local
SYSCONFDIR=/etc/tupperware
STORE=/var/lib/tupperware
STATE_DIR=/run/tupperware
IMAGE_SIZE=20G
USERS=()
FORCE_CONFIG=0
KEEP_CONFIG=0

prog=${0##*/}
die() { printf '%s: %s\n' "$prog" "$*" >&2; exit 1; }
note() { printf '%s: %s\n' "$prog" "$*"; }

options_usage() {
    cat <<EOF
usage: $prog [--prefix P] [--sysconfdir D] [--store S] [--state-dir R]
          [--image-size SZ] [--user U]... [--force-config] [--keep-config]

  --prefix P        tupper-supervisor in P/bin, helpers in P/libexec/tupperware
                    (default /usr/local)
  --sysconfdir D    directory of tupperware.toml, compiled in (default /etc/tupperware)
  --store S         store root written to the config (default /var/lib/tupperware)
  --state-dir R     helper state written to the config (default /run/tupperware)
  --image-size SZ   size of the store's btrfs image file, e.g. 20G (default 20G)
  --user U          give U a subordinate id range (repeatable; install only)
  --force-config    overwrite an existing tupperware.toml (install only)
  --keep-config     leave tupperware.toml in place (uninstall only)
EOF
}

# A path that is absolute, normalised enough, and safe to quote in TOML.
check_path() {
    local opt=$1 p=$2
    case "$p" in
        /*) ;;
        *) die "$opt must be an absolute path, not \"$p\"" ;;
    esac
    case "$p" in
        *'"'* | *\\* | *$'\n'* | *' '* | *'|'* | *'&'*)
            die "$opt \"$p\" contains a quote, backslash, space, newline, | or &" ;;
        */../* | */.. | */./* | */.) die "$opt \"$p\" must not contain . or .. components" ;;
    esac
}

parse_options() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --prefix | --sysconfdir | --store | --state-dir | --image-size | --user)
                if [ $# -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value"; fi
                case "$1" in
                    --prefix) PREFIX=$2 ;;
                    --sysconfdir) SYSCONFDIR=$2 ;;
                    --store) STORE=$2 ;;
                    --state-dir) STATE_DIR=$2 ;;
                    --image-size) IMAGE_SIZE=$2 ;;
                    --user) USERS+=("$2") ;;
                esac
                shift 2
                ;;
            --prefix=* | --sysconfdir=* | --store=* | --state-dir=* | --image-size=* | --user=*)
                parse_options "${1%%=*}" "${1#*=}"
                shift
                ;;
            --force-config) FORCE_CONFIG=1; shift ;;
            --keep-config) KEEP_CONFIG=1; shift ;;
            -h | --help) options_usage; exit 0 ;;
            *) options_usage >&2; die "unknown argument: $1" ;;
        esac
    done
    # Strip trailing slashes (but keep "/").
    PREFIX=${PREFIX%/}; PREFIX=${PREFIX:-/}
    SYSCONFDIR=${SYSCONFDIR%/}; SYSCONFDIR=${SYSCONFDIR:-/}
    STORE=${STORE%/}
    STATE_DIR=${STATE_DIR%/}
    check_path --prefix "$PREFIX"
    check_path --sysconfdir "$SYSCONFDIR"
    check_path --store "$STORE"
    check_path --state-dir "$STATE_DIR"
    if [ -z "$STORE" ] || [ "$STORE" = / ]; then die "--store must not be /"; fi
    if [ -z "$STATE_DIR" ] || [ "$STATE_DIR" = / ]; then die "--state-dir must not be /"; fi
    # Same rule as the helpers: bytes or K/M/G/T, at least 256M.
    [[ "$IMAGE_SIZE" =~ ^[0-9]+[KkMmGgTt]?$ ]] ||
        die "--image-size \"$IMAGE_SIZE\": expected bytes or a number with K, M, G or T"
    local n=${IMAGE_SIZE%[KkMmGgTt]} shift_by=0
    case "$IMAGE_SIZE" in
        *[Kk]) shift_by=10 ;; *[Mm]) shift_by=20 ;; *[Gg]) shift_by=30 ;; *[Tt]) shift_by=40 ;;
    esac
    [ "${#n}" -le 12 ] || die "--image-size \"$IMAGE_SIZE\" is too large"
    [ $((10#$n << shift_by)) -ge $((256 << 20)) ] ||
        die "--image-size \"$IMAGE_SIZE\" must be at least 256M"

    BINDIR=$PREFIX/bin
    LIBEXECDIR=$PREFIX/libexec/tupperware
    [ "$PREFIX" = / ] && BINDIR=/bin && LIBEXECDIR=/libexec/tupperware
    CONFIG=$SYSCONFDIR/tupperware.toml
    [ "$SYSCONFDIR" = / ] && CONFIG=/tupperware.toml
    # The helpers: packaging/helpers.list is the one list.
    mapfile -t HELPERS < <(grep -v -e '^#' -e '^$' "$(dirname "${BASH_SOURCE[0]}")/helpers.list")
    [ "${#HELPERS[@]}" -gt 0 ] || die "no helpers listed in packaging/helpers.list"
}

require_root() {
    [ "$(id -u)" = 0 ] || die "must run as root (try: sudo $0 $*)"
}
