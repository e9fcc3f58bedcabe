#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The man pages say what the programs do:
# - every long option that `cowbd --help` and `cowbd-img [COMMAND] --help`
#   print has an =item of its own in cowbd(8) or cowbd-img(1), and every
#   key=value parameter of `nbdkit cowbd --help` one in
#   nbdkit-cowbd-plugin(1);
# - the formats each page lists are exactly those the program names, and
#   each one is accepted by it (an image of that format is created,
#   served by cowbd and by the plugin with the format given), while a
#   format not listed is refused.
. "${srcdir:-.}/functions.sh"
requires nbdkit --version
requires nbdinfo --version

man="$abs_top_srcdir/man"
plugin=$COWBD_PLUGIN

# long_options: the --long-options in standard input, one a line.
long_options () { grep -o -- '--[a-z][a-z0-9-]*' | sort -u; }

# has_item POD OPTION: OPTION (e.g. --port or format=) is named in bold at
# the start of some =item of POD.
has_item ()
{
    case $2 in
        *=) grep -E "^=item .*B<$2" "$1" ;;
        *) grep -E "^=item .*B<$2([>=|]|$)" "$1" ;;
    esac >/dev/null
}

missing=0
check_options ()  # POD PROGRAM-DESCRIPTION, options on stdin
{
    local pod=$1 what=$2 opt
    while read -r opt; do
        [ -n "$opt" ] || continue
        if ! has_item "$man/$pod" "$opt"; then
            echo "$pod: no =item for $what option $opt"
            missing=$((missing + 1))
        fi
    done
}

# (Not in a pipeline: check_options counts in this shell.)
check_options cowbd.8.pod cowbd < <(cowbd --help | long_options)
commands=$(cowbd-img --help | awk '/^Commands:/ { on = 1; next }
                                  on && /^  [a-z]/ { print $1 } on && /^$/ { exit }')
[ -n "$commands" ] || fail "cowbd-img --help lists no commands"
check_options cowbd-img.1.pod cowbd-img < <(
    { cowbd-img --help; for c in $commands; do cowbd-img "$c" --help; done; } |
    long_options)
if command -v cowbdctl >/dev/null; then
    check_options cowbdctl.1.pod cowbdctl < <(cowbdctl --help | long_options)
fi
check_options nbdkit-cowbd-plugin.1.pod nbdkit-cowbd-plugin < <(
    nbdkit_env nbdkit "$plugin" --help | sed -n '/^plugin: cowbd/,$p' |
    grep -oE '^(\[file=\]|[a-z][a-z-]*=)' | sed 's/^\[file=\]/file=/')
[ "$missing" -eq 0 ] || fail "$missing options missing from the man pages"

# Formats.  pod_formats POD ITEM-REGEX: the B<x> words of that item's
# header and the C<x> words of its first paragraph, one a line, sorted.
pod_formats ()
{
    awk -v re="$2" '
        $0 ~ "^=item " && $0 ~ re { on = 1; print; next }
        on && /^$/ && n++ >= 1 { exit }
        on { gsub(/B<[^>]*>/, ""); print }' "$man/$1" |
        grep -oE '[CB]<[a-z0-9]+>' | sed 's/^.<//; s/>$//' |
        grep -vx auto | sort -u   # auto: probe, not a format
}
sorted () { tr ', ' '\n\n' | grep -v '^$' | sort -u; }

img_formats=$(cowbd-img --help | sed -n 's/^Formats: \([^.]*\)\..*/\1/p' | sorted)
plugin_formats=$(nbdkit_env nbdkit "$plugin" --dump-plugin |
                 sed -n 's/^cowbd_formats=//p' | sorted)
[ -n "$img_formats" ] || fail "cowbd-img --help names no formats"
[ "$img_formats" = "$plugin_formats" ] ||
    fail "cowbd-img names formats '$img_formats', the plugin '$plugin_formats'"
for spec in "cowbd-img.1.pod:B<-f> FMT" "cowbd.8.pod:B<--format>" \
            "nbdkit-cowbd-plugin.1.pod:B<format="; do
    pod=${spec%%:*}; re=${spec#*:}
    listed=$(pod_formats "$pod" "$re")
    [ "$listed" = "$img_formats" ] ||
        fail "$pod lists formats '$(echo $listed)', the programs accept '$(echo $img_formats)'"
done

cd "$tmp"
for f in $img_formats; do
    cowbd-img create -q -f "$f" "img.$f" 1M || fail "cowbd-img create -f $f failed"
    cowbd --format="$f" -U - "img.$f" --run 'nbdinfo --size "$uri"' > size ||
        fail "cowbd --format=$f refused a $f image"
    [ "$(cat size)" = 1048576 ] || fail "cowbd --format=$f: size $(cat size)"
    nbdkit_env nbdkit -U - "$plugin" "img.$f" format="$f" \
        --run 'nbdinfo --size "$uri"' > size ||
        fail "nbdkit cowbd format=$f refused a $f image"
    [ "$(cat size)" = 1048576 ] || fail "nbdkit cowbd format=$f: size $(cat size)"
done
expect_fail cowbd-img create -q -f vmdk img.vmdk 1M
[ ! -e img.vmdk ] || fail "cowbd-img create -f vmdk left a file"
expect_fail cowbd --format=vmdk -U - img.raw --run true
expect_fail nbdkit_env nbdkit -U - "$plugin" img.raw format=vmdk --run true
echo "man pages: options and formats match the programs"
