# SPDX-License-Identifier: BSD-3-Clause
# Tests of the qcow2 driver; included from tests/Makefile.am.
QCOW2_C_TESTS = \
	test-qcow2-interop \
	test-qcow2-bad \
	test-qcow2-create \
	test-qcow2-crash-lazy \
	test-qcow2-crash-nolazy
QCOW2_SH_TESTS = \
	test-qcow2-img.sh \
	test-qcow2-plugin.sh \
	test-qcow2-server.sh
TESTS += $(QCOW2_C_TESTS) $(QCOW2_SH_TESTS)
check_PROGRAMS += $(QCOW2_C_TESTS)
EXTRA_DIST += $(QCOW2_SH_TESTS) test-qcow2-serve-lib.sh

# The engine's crash test, on qcow2 with lazy refcounts on and off.
test_qcow2_crash_lazy_SOURCES = test-engine-crash.c engine-test.h
test_qcow2_crash_lazy_CFLAGS = $(TEST_CFLAGS) \
	-DCRASH_FORMAT_DEFAULT='"qcow2"' -DCRASH_LAZY=1
test_qcow2_crash_lazy_LDADD = $(ENGINE_LIBS)
test_qcow2_crash_nolazy_SOURCES = test-engine-crash.c engine-test.h
test_qcow2_crash_nolazy_CFLAGS = $(TEST_CFLAGS) \
	-DCRASH_FORMAT_DEFAULT='"qcow2"' -DCRASH_LAZY=0
test_qcow2_crash_nolazy_LDADD = $(ENGINE_LIBS)
test_qcow2_interop_SOURCES = test-qcow2-interop.c engine-test.h
test_qcow2_interop_CFLAGS = $(TEST_CFLAGS)
test_qcow2_interop_LDADD = $(ENGINE_LIBS)
test_qcow2_bad_SOURCES = test-qcow2-bad.c engine-test.h
test_qcow2_bad_CFLAGS = $(TEST_CFLAGS)
test_qcow2_bad_LDADD = $(ENGINE_LIBS)
test_qcow2_create_SOURCES = test-qcow2-create.c engine-test.h
test_qcow2_create_CFLAGS = $(TEST_CFLAGS)
test_qcow2_create_LDADD = $(ENGINE_LIBS)
