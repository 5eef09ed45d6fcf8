# shellcheck shell=bash
# Sourced by tests/run.sh and bench/bench.sh (issue 9): tupper-cgroup
# creates user-<uid>/<id> beneath a parent per hierarchy; a test or bench run
# puts those parents beneath its own cgroup in each hierarchy (the memory
# cgroup of a hybrid host need not be "/"), and removes them at the end.
#
#   cgroup_parents NAME >>tupperware.toml
#
# creates the parents (cpuset ones get their parent's cpus and mems), prints
# the [cgroups] section naming them, and appends each directory created to
# the array CG_DIRS (which the caller declares and removes, deepest first).
cgroup_parents() {
    local name=$1 kind mnt path ctrls parent dir
    printf '\n[cgroups]\nparent = "/%s"\n[cgroups.parents]\n' "$name"
    while IFS=: read -r _ ctrls path; do
        case "$ctrls" in
            "") kind=unified mnt=/sys/fs/cgroup/unified ;;
            memory | pids | cpu | cpuacct | cpuset | freezer) kind=$ctrls mnt=/sys/fs/cgroup/$ctrls ;;
            *) continue ;;
        esac
        [ -d "$mnt" ] || continue
        parent=${path%/}/$name
        printf '%s = "%s"\n' "$kind" "$parent"
        dir=$mnt$parent
        mkdir -p "$dir"
        if [ "$kind" = cpuset ]; then
            cat "$mnt${path%/}/cpuset.cpus" >"$dir/cpuset.cpus"
            cat "$mnt${path%/}/cpuset.mems" >"$dir/cpuset.mems"
        fi
        CG_DIRS+=("$dir")
    done </proc/self/cgroup
}
