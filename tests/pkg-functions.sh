# SPDX-License-Identifier: BSD-3-Clause
# Sourced by the packaging tests (not a test itself): functions.sh, then
#
#   pkg_install           make install DESTDIR=$dest (the server, the
#                         tool, man pages, units, completion) into
#                         $tmp/root, as an operator's machine has them
#   unit_file NAME        path of the installed unit NAME under $dest
#   unit_value FILE KEY   the values of KEY= in a unit file, one a line
#   in_dest PATH          PATH as installed under $dest
. "${srcdir:-.}/functions.sh"

requires make --version
dest="$tmp/root"

pkg_install ()
{
    local d
    for d in server tools man systemd completion; do
        # A make of its own, not a job of the make running the tests.
        env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
            make -s -C "$abs_top_builddir/$d" install DESTDIR="$dest" \
            > "$tmp/install.log" 2>&1 ||
            { cat "$tmp/install.log"; fail "make install in $d"; }
    done
}

unit_file ()
{
    local f
    f=$(find "$dest" -path "*/systemd/system/$1" -type f | head -n 1)
    [ -n "$f" ] || fail "unit $1 not installed under $dest"
    echo "$f"
}

unit_value ()
{
    sed -n "s/^$2=//p" "$1"
}

in_dest ()
{
    echo "$dest$1"
}

# unit_command UNIT: the command systemd would run for the installed
# UNIT's ExecStart=, in the array $cmd, its program taken from $dest:
# Environment= first, then the EnvironmentFile= (under $dest, as shell
# assignments), then $VAR split at white space and ${VAR} as one word,
# as systemd.service(5) says.  $workdir: its WorkingDirectory= under
# $dest.  Specifiers (%i) are not expanded: use it on cowbd.service.
unit_command ()
{
    local f=$1 assignments envfile exec word name value split
    cmd=()
    assignments=$(unit_value "$f" Environment)
    envfile=$(unit_value "$f" EnvironmentFile)
    exec=$(unit_value "$f" ExecStart)
    workdir=$(in_dest "$(unit_value "$f" WorkingDirectory)")
    [ -n "$exec" ] || fail "$f: no ExecStart"
    (
        set -f
        eval "set -- $assignments"
        for a; do printf 'export %q\n' "$a"; done
    ) > "$tmp/unit-env.sh"
    . "$tmp/unit-env.sh"
    if [ -n "$envfile" ]; then
        envfile=$(in_dest "${envfile#-}")
        if [ -f "$envfile" ]; then
            set -a; . "$envfile"; set +a
        fi
    fi
    set -f
    for word in $exec; do
        if [[ $word =~ ^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$ ]]; then
            name=${BASH_REMATCH[1]}; cmd+=("${!name-}")
        elif [[ $word =~ ^\$([A-Za-z_][A-Za-z0-9_]*)$ ]]; then
            name=${BASH_REMATCH[1]}; value=${!name-}
            read -r -a split <<< "$value"
            cmd+=("${split[@]}")
        else
            cmd+=("$word")
        fi
    done
    set +f
    cmd[0]=$(in_dest "${cmd[0]}")
}
