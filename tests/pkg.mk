# SPDX-License-Identifier: BSD-3-Clause
# Tests of what make install puts in place for operators: systemd units,
# bash completion; included from tests/Makefile.am.
PKG_TESTS = \
	test-pkg-units-verify.sh \
	test-pkg-service.sh \
	test-pkg-completion.sh
TESTS += $(PKG_TESTS)
EXTRA_DIST += $(PKG_TESTS) pkg-functions.sh completion-pty.py
