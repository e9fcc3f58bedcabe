# SPDX-License-Identifier: BSD-3-Clause
# Tests of remote backing images (NBD); included from tests/Makefile.am.
REMOTE_TESTS = \
	test-remote-cache.sh \
	test-remote-clone.sh \
	test-remote-cache-64m.sh \
	test-remote-cache-changed.sh \
	test-remote-cache-crash.sh \
	test-remote-cache-plugin.sh \
	test-remote-cache-tls.sh \
	test-remote-failure.sh \
	test-remote-img-timeout.sh \
	test-remote-interop.sh \
	test-remote-libnbd-lazy.sh
TESTS += $(REMOTE_TESTS)
EXTRA_DIST += $(REMOTE_TESTS) remote-functions.sh
