# Issue 12: the suite against the installed .deb (TUPPER_TEST_INSTALL=deb).
# Sourced by tests/run.sh, whose variables it uses (STORE, STATE, TEST_USER, ...).
# shellcheck shell=bash disable=SC2154

PKG_OUT=$repo/target/packages

package_installed() {
    dpkg-query -W -f='${Status}' tupperware 2>/dev/null | grep -q "install ok installed"
}

package_install() {
    step "build the .deb and the .rpm (packaging/build-packages.sh)"
    # An installation found here is not the suite's: it is refused before
    # the exit trap that purges the suite's own is set, so it is never
    # purged.
    if package_installed || [ -e /etc/tupperware ] || [ -e /usr/libexec/tupperware ]; then
        die "TUPPER_TEST_INSTALL=deb installs into /usr and /etc/tupperware, which already hold tupperware; remove it first"
    fi
    PACKAGE_OURS=1
    trap package_cleanup EXIT
    rm -f "$PKG_OUT"/tupperware*.deb "$PKG_OUT"/tupperware*.rpm
    "$repo/packaging/build-packages.sh" "$PKG_OUT"
    local deb rpmfile
    deb=$(find "$PKG_OUT" -maxdepth 1 -name 'tupperware_*.deb' | head -n1)
    rpmfile=$(find "$PKG_OUT" -maxdepth 1 -name 'tupperware-*.rpm' | head -n1)
    if [ -z "$deb" ] || [ -z "$rpmfile" ]; then die "build-packages.sh wrote no .deb or no .rpm"; fi

    step "administrator's step 1: apt-get install $deb"
    # Preseeded configuration, as an administrator may write it before installing:
    # the test store instead of /var/lib/tupperware (kept with --force-confold).
    install -d -m 0755 /etc/tupperware
    sed -e "s|^path = .*|path = \"$STORE\"|" -e 's|^image_size = .*|image_size = "4G"|' \
        "$repo/packaging/tupperware.toml" >/etc/tupperware/tupperware.toml
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confold "$deb"
    package_installed || die "tupperware is not installed after apt-get install"
    findmnt "$STORE" >/dev/null || die "postinst did not create and mount the store $STORE"

    step "each helper's file capabilities: installed and in the .rpm = its --print-caps"
    local h want got
    for h in "${HELPERS[@]}"; do
        want=$(/usr/libexec/tupperware/"$h" --print-caps) || die "$h --print-caps failed"
        want=$(printf '%s\n' "${want%=p}" | tr , '\n' | LC_ALL=C sort | paste -sd,)
        got=$(getcap /usr/libexec/tupperware/"$h" | awk '{print $NF}')
        got=$(printf '%s\n' "${got%=p}" | tr , '\n' | LC_ALL=C sort | paste -sd,)
        [ "$got" = "$want" ] || die "installed $h has [$got], --print-caps says [$want]"
        got=$(rpm -qp --filecaps "$rpmfile" 2>/dev/null | awk -v f="/usr/libexec/tupperware/$h" '$1 == f { print $2 }')
        got=$(printf '%s\n' "${got%=p}" | tr , '\n' | LC_ALL=C sort | paste -sd,)
        [ "$got" = "$want" ] || die "the .rpm gives $h [$got], --print-caps says [$want]"
        echo "$h: $want=p (installed and in the .rpm)"
    done
    [ -z "$(getcap /usr/bin/tupper-supervisor)" ] || die "tupper-supervisor has file capabilities"
    man -w tupper-supervisor-run >/dev/null 2>&1 || [ -e /usr/share/man/man1/tupper-supervisor-run.1.gz ] ||
        die "no man page tupper-supervisor-run(1)"
    for f in /usr/share/bash-completion/completions/tupper-supervisor \
        /usr/share/zsh/vendor-completions/_tupper-supervisor \
        /usr/share/fish/vendor_completions.d/tupper-supervisor.fish "$IMAGE_TAR"; do
        [ -s "$f" ] || die "the package did not install $f"
    done

    step "administrator's step 2: fresh users with subordinate ranges (usermod, as README says)"
    local u
    for u in "$TEST_USER" "$SECOND_USER"; do
        if id "$u" >/dev/null 2>&1; then userdel -r "$u" >/dev/null 2>&1 || userdel "$u"; fi
        sed -i "/^$u:/d" /etc/subuid /etc/subgid
        useradd -m -s /bin/bash "$u"
        give_subid_range "$u"
    done
    id "$HELPER_TEST_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$HELPER_TEST_USER"
    give_subid_range "$HELPER_TEST_USER"
    grep -E "^($TEST_USER|$SECOND_USER|$HELPER_TEST_USER):" /etc/subuid
}

package_purge_and_check() {
    step "apt-get purge tupperware: nothing of it is left"
    umount "$STORE" 2>/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -q tupperware
    ! package_installed || die "tupperware is still installed after apt-get purge"
    local left=()
    local p
    for p in /usr/bin/tupper-supervisor /usr/libexec/tupperware /etc/tupperware /run/tupperware \
        /usr/share/tupperware /usr/share/man/man1/tupper-supervisor.1.gz \
        /usr/share/bash-completion/completions/tupper-supervisor; do
        [ ! -e "$p" ] || left+=("$p")
    done
    [ "${#left[@]}" = 0 ] || die "apt-get purge left: ${left[*]}"
    [ -z "$(getcap -r /usr/bin /usr/libexec 2>/dev/null | grep tupper || true)" ] ||
        die "file capabilities of tupperware are left"
    echo "purged: no binary, capability, configuration or helper state is left"
}

# On any exit: never leave the package installed on the machine.
package_cleanup() {
    if [ "${PACKAGE_OURS:-0}" = 1 ] && package_installed; then
        umount "$STORE" 2>/dev/null || true
        DEBIAN_FRONTEND=noninteractive apt-get purge -y -q tupperware >/dev/null 2>&1 || true
    fi
}
