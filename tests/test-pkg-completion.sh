#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The bash completion that make install puts into bash-completion's
# folder, loaded by bash-completion on first use as in a user's shell,
# offers: the subcommands for `cowbd-img cre<TAB>`, the formats for
# `cowbd-img create -f <TAB>`, the --tls values for `cowbd --tls=<TAB>`,
# and options and files where they belong.  An interactive bash on a
# pseudo-terminal does the typing (completion-pty.py).
. "${srcdir:-.}/pkg-functions.sh"
requires cowbd --version
requires cowbd-img --version
requires cowbdctl --version
requires /usr/bin/python3 -c 'import pty'
bash_completion=/usr/share/bash-completion/bash_completion
requires test -f "$bash_completion"

pkg_install
compdir=$(dirname "$(find "$dest" -path '*/bash-completion/completions/cowbd-img')")
[ -f "$compdir/cowbd" ] || fail "no completion for cowbd in $compdir"
[ -f "$compdir/cowbdctl" ] || fail "no completion for cowbdctl in $compdir"

# The user's shell: bash-completion, which finds ours in XDG_DATA_DIRS.
# Each completion function is wrapped to write what it offered to $dump.
dump="$tmp/dump"
cat > "$tmp/rc" <<EOT
PS1='$ '
export XDG_DATA_DIRS='${compdir%/bash-completion/completions}'
. '$bash_completion'
for c in cowbd cowbd-img cowbdctl; do
    _completion_loader "\$c"
    f=\$(complete -p "\$c" | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
    [ -n "\$f" ] || { echo "no completion for \$c"; exit 1; }
    eval "\$(declare -f "\$f" | sed "1s/^\$f /real\$f /")"
    eval "\$f () { real\$f \"\\\$@\"; printf '%s\n' \"\\\${COMPREPLY[@]}\" > '$dump.tmp'; mv '$dump.tmp' '$dump'; }"
done
cd '$tmp/files'
: > '$dump'
EOT
mkdir "$tmp/files"
touch "$tmp/files/golden.qcow2" "$tmp/files/clone.qed"
mkdir "$tmp/files/sub"

/usr/bin/python3 "$abs_top_srcdir/tests/completion-pty.py" "$tmp/rc" "$dump" \
    'cowbd-img cre' \
    'cowbd-img ' \
    'cowbd-img create -f ' \
    'cowbd-img convert -O q' \
    'cowbd-img create -' \
    'cowbd-img info --output=' \
    'cowbd-img info ' \
    'cowbd-img check -r ' \
    'cowbd --tls=' \
    'cowbd --tls=r' \
    'cowbd --vers' \
    'cowbd --tls-c' \
    'cowbd vm1=cl' \
    'cowbd -f ' \
    'cowbdctl export-r' \
    'cowbdctl --output=' \
    'cowbdctl export-add vm1 gol' \
    > "$tmp/got" || { cat "$tmp/got"; fail "completion-pty.py"; }
cat "$tmp/got"

expect ()
{
    local line=$1 want=$2 got
    got=$(awk -F '\t' -v l="$line" '$1 == l { print $2 }' "$tmp/got")
    [ "$got" = "$want" ] || fail "'$line<TAB>': '$got', expected '$want'"
}
# Every subcommand of cowbd-img --help, and nothing else.
subs=$(cowbd-img --help | sed -n '/^Commands:/,/^$/s/^  *\([a-z][a-z]*\) .*/\1/p' |
       sort | tr '\n' ' ')
expect 'cowbd-img cre' 'create'
expect 'cowbd-img ' "${subs% }"
expect 'cowbd-img create -f ' 'qcow2 qed raw'
expect 'cowbd-img convert -O q' 'qcow2 qed'
expect 'cowbd-img info --output=' 'human json'
expect 'cowbd-img info ' 'clone.qed golden.qcow2 sub'
expect 'cowbd-img check -r ' 'all leaks'
expect 'cowbd --tls=' 'off on require'
expect 'cowbd --tls=r' 'require'
expect 'cowbd --vers' '--version'
expect 'cowbd --tls-c' '--tls-certificates='
expect 'cowbd vm1=cl' 'clone.qed'
expect 'cowbd -f ' 'qcow2 qed raw'
expect 'cowbdctl export-r' 'export-remove'
expect 'cowbdctl --output=' 'human json'
expect 'cowbdctl export-add vm1 gol' 'golden.qcow2'
# The options of create, as its usage line names them.
opts=$(awk -F '\t' '$1 == "cowbd-img create -" { print $2 }' "$tmp/got")
for o in -f -b -F -o -p -q -u --help; do
    [[ " $opts " == *" $o "* ]] || fail "cowbd-img create -<TAB> lacks $o: $opts"
done
[[ " $opts " != *" -O "* ]] || fail "cowbd-img create -<TAB> offers convert's -O"
