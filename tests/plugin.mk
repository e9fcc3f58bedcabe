# SPDX-License-Identifier: BSD-3-Clause
# Tests of the plugin; included from tests/Makefile.am.  Each serves
# images through nbdkit with the built plugin ($COWBD_PLUGIN) and checks
# the result with qemu-img, qemu-io, nbdinfo, nbdsh and nbdcopy; each
# skips when the plugin was not built.
PLUGIN_TESTS = \
	test-plugin-help.sh \
	test-plugin-info.sh \
	test-plugin-corrupt-bit.sh \
	test-plugin-data-nbdsh.sh \
	test-plugin-data-qemu-io.sh \
	test-plugin-copy.sh \
	test-plugin-multi-conn.sh \
	test-plugin-extents.sh \
	test-plugin-dir.sh \
	test-plugin-clone.sh \
	test-plugin-bad-input.sh \
	test-plugin-zero-trim.sh \
	test-plugin-crash.sh \
	test-plugin-readonly.sh \
	test-plugin-probe.sh \
	test-plugin-lock.sh \
	test-plugin-stats.sh \
	test-plugin-install.sh
TESTS += $(PLUGIN_TESTS)
EXTRA_DIST += $(PLUGIN_TESTS) plugin-functions.sh

