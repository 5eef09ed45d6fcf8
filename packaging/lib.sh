# Shared by packaging/setup.sh and tests/run.sh: system packages and a Rust toolchain.
# shellcheck shell=bash

# Debian packages the build, the product and the tests need.
TUPPER_PACKAGES=(btrfs-progs busybox-static iproute2 libcap2-bin uidmap util-linux
    iputils-ping ca-certificates curl gcc libc6-dev pkg-config nftables
    mmdebstrap  # mmdebstrap: the test suite's Debian image (tests/make-debian-image.sh)
    dpkg-dev debhelper rpm lintian)  # the .deb and .rpm (packaging/build-packages.sh)
# umoci, skopeo: the OCI test images (tests/make-oci-images.sh, issue 10)
TUPPER_PACKAGES+=(umoci skopeo)

ensure_packages() {
    local missing=()
    local p
    for p in "${TUPPER_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "installing: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

# A cargo new enough for the workspace (rustup's stable when the system has none).
ensure_rust() {
    local d
    for d in "$HOME/.cargo/bin" /root/.cargo/bin; do
        [ -x "$d/cargo" ] && case ":$PATH:" in *":$d:"*) ;; *) PATH="$d:$PATH" ;; esac
    done
    export PATH
    if command -v cargo >/dev/null 2>&1; then
        local v
        v=$(cargo --version | awk '{print $2}')
        if [ "$(printf '%s\n1.85.0\n' "$v" | sort -V | head -n1)" = "1.85.0" ]; then
            return 0
        fi
        echo "cargo $v is older than 1.85; installing a current toolchain with rustup"
    fi
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt
    PATH="$HOME/.cargo/bin:$PATH"
    export PATH
}

# Issue 12: an administrator's step 2, as README tells it: give user $1 a
# subordinate uid and gid range of 65536 ids that no one else has (kept when
# the user has ranges already).
give_subid_range() {
    local u=$1 end start
    if grep -q "^$u:" /etc/subuid 2>/dev/null && grep -q "^$u:" /etc/subgid 2>/dev/null; then
        return 0
    fi
    end=$(cat /etc/subuid /etc/subgid 2>/dev/null |
        awk -F: 'NF >= 3 && $2 ~ /^[0-9]+$/ && $3 ~ /^[0-9]+$/ { e = $2 + $3; if (e > m) m = e }
                 END { print m + 0 }')
    start=$(((end + 65535) / 65536 * 65536))
    [ "$start" -ge 131072 ] || start=131072
    usermod --add-subuids "$start-$((start + 65535))" --add-subgids "$start-$((start + 65535))" "$u"
    echo "$u: subordinate uids and gids $start-$((start + 65535))"
}
