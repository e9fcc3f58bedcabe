#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit cowbd --help and --dump-plugin: the parameters are documented,
# the plugin declares API 2, the parallel thread model and the callbacks
# the issue names, and the module exports nothing but plugin_init.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/plugin-functions.sh"

nbdkit_env nbdkit "$COWBD_PLUGIN" --help > "$tmp/help"
for p in 'file=' 'dir=DIR' 'format=auto|raw|qed|qcow2' 'cache-size=SIZE'; do
    grep -qF -- "$p" "$tmp/help" || fail "--help does not mention $p"
done

nbdkit_env nbdkit "$COWBD_PLUGIN" --dump-plugin > "$tmp/dump"
for line in name=cowbd api_version=2 max_thread_model=parallel \
            thread_model=parallel magic_config_key=file \
            has_get_ready=1 has_list_exports=1 has_default_export=1 \
            has_export_description=1 has_block_size=1 has_can_multi_conn=1 \
            has_can_fua=1 has_can_zero=1 has_can_fast_zero=1 has_can_trim=1 \
            has_can_extents=1 has_extents=1 has_can_cache=1 has_cache=1 \
            "cowbd_formats=raw, qed, qcow2"; do
    grep -qxF -- "$line" "$tmp/dump" || fail "--dump-plugin lacks '$line'"
done

# Only plugin_init and the debug flag nbdkit sets: the engine's symbols
# must not clash with nbdkit's or another plugin's.
if command -v nm >/dev/null; then
    nm -D --defined-only "$COWBD_PLUGIN" | awk '{print $3}' |
        grep -v -e '^_init$' -e '^_fini$' | sort > "$tmp/syms" || true
    [ "$(tr '\n' ' ' < "$tmp/syms")" = "cowbd_debug_stats plugin_init " ] ||
        fail "exported symbols: $(tr '\n' ' ' < "$tmp/syms")"
fi
