# SPDX-License-Identifier: BSD-3-Clause
# Tests of the qcow2 driver; included from tests/Makefile.am.
QCOW2_C_TESTS = \
	test-qcow2-interop \
	test-qcow2-bad \
	test-qcow2-create
QCOW2_SH_TESTS = \
	test-qcow2-img.sh \
	test-qcow2-plugin.sh \
	test-qcow2-server.sh
TESTS += $(QCOW2_C_TESTS) $(QCOW2_SH_TESTS)
check_PROGRAMS += $(QCOW2_C_TESTS)
EXTRA_DIST += $(QCOW2_SH_TESTS) qcow2-serve-functions.sh

test_qcow2_interop_SOURCES = test-qcow2-interop.c engine-test.h
test_qcow2_interop_CFLAGS = $(TEST_CFLAGS)
test_qcow2_interop_LDADD = $(ENGINE_LIBS)
test_qcow2_bad_SOURCES = test-qcow2-bad.c engine-test.h
test_qcow2_bad_CFLAGS = $(TEST_CFLAGS)
test_qcow2_bad_LDADD = $(ENGINE_LIBS)
test_qcow2_create_SOURCES = test-qcow2-create.c engine-test.h
test_qcow2_create_CFLAGS = $(TEST_CFLAGS)
test_qcow2_create_LDADD = $(ENGINE_LIBS)
