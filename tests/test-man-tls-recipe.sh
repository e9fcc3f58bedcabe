#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The TLS recipes of cowbd(8) work when pasted into a shell: the commands
# of the "Certificates" and "Pre-shared keys" sections are taken from the
# man page source as they stand and run one after the other, in a private
# network namespace so that the page's default port is ours alone.
. "${srcdir:-.}/functions.sh"
requires sh -c 'cowbd --version | grep -q "^features:.*tls"'
requires certtool --version
requires psktool --version
requires nbdinfo --version
requires ip -V
if [ "$(id -u)" -eq 0 ]; then netns=(unshare --net); else netns=(unshare --net --map-root-user); fi
requires "${netns[@]}" true

pod="$abs_top_srcdir/man/cowbd.8.pod"

# recipe HEADING: the verbatim lines (one leading space) of that =head2
# section, without the space: what a reader copies.
recipe ()
{
    awk -v h="=head2 $1" '
        $0 == h { on = 1; next }
        on && /^=head/ { exit }
        on && /^ / { print substr($0, 2) }' "$pod"
}

for section in Certificates "Pre-shared keys"; do
    dir="$tmp/${section// /-}"
    mkdir "$dir"
    recipe "$section" > "$dir/recipe.sh"
    grep -q '^nbdinfo ' "$dir/recipe.sh" || fail "$section: no nbdinfo line in the recipe"
    # Each recipe is self-contained but the PSK one uses an image made by
    # the first; a reader who follows the page has it by then.
    cp "$tmp/Certificates/vm1.qcow2" "$dir/" 2>/dev/null || true
    cleanup_fn "[ -s '$dir/cowbd.pid' ] && kill \$(cat '$dir/cowbd.pid') 2>/dev/null"
    (cd "$dir" &&
     "${netns[@]}" bash -c 'ip link set lo up && set -ex && . ./recipe.sh' \
        > "$dir/out" 2>&1) ||
        { cat "$dir/out"; fail "$section: the recipe failed when run as written"; }
    grep -qE '^\s*export-size: 1073741824' "$dir/out" ||
        { cat "$dir/out"; fail "$section: nbdinfo did not show the image"; }
    grep -qE '^\s*uri: nbds://' "$dir/out" ||
        { cat "$dir/out"; fail "$section: not a TLS connection"; }
done
echo "TLS recipes of cowbd(8) work as written"
