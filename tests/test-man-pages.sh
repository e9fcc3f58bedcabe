#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Lints every man page source: podchecker finds no error or warning, each
# page has the standard sections (programs also OPTIONS and EXIT STATUS),
# each page is listed in man/Makefile.am, and every page it links to with
# L<name(N)> is ours or a page that ./dev.sh deps installs.
. "${srcdir:-.}/functions.sh"
requires sh -c 'command -v podchecker'

mandir="$abs_top_srcdir/man"
pages=("$mandir"/*.pod)
[ -e "${pages[0]}" ] || fail "no man pages in $mandir"

for pod in "${pages[@]}"; do
    page=$(basename "$pod" .pod)          # e.g. cowbd-img.1
    section=${page##*.}
    podchecker -warnings -warnings "$pod" >"$tmp/out" 2>&1 ||
        { cat "$tmp/out"; fail "$page: podchecker"; }
    if grep -q -i warning "$tmp/out"; then
        cat "$tmp/out"; fail "$page: podchecker warnings"
    fi
    required=(NAME SYNOPSIS DESCRIPTION "SEE ALSO")
    case $section in
        1|8) required+=(OPTIONS "EXIT STATUS") ;;
    esac
    for s in "${required[@]}"; do
        grep -q "^=head1 $s\$" "$pod" || fail "$page: no $s section"
    done
    grep -q -w "$page" "$mandir/Makefile.am" ||
        fail "$page: not listed in man/Makefile.am"
    grep -o 'L<[a-z0-9_.-]*([0-9])>' "$pod" | sed 's/^L<//; s/>$//' |
        sort -u > "$tmp/links"
    while read -r link; do
        name=${link%(*}; sec=${link#*(}; sec=${sec%)}
        [ -e "$mandir/$name.$sec.pod" ] && continue
        # Another project's page must be installed: look for the file
        # itself, since man(1) is not on a minimal machine.
        compgen -G "/usr/share/man/man$sec/$name.$sec*" >/dev/null ||
            fail "$page: links to $link, which is neither ours nor installed"
    done < "$tmp/links"
done
echo "man pages: ${#pages[@]} checked"
