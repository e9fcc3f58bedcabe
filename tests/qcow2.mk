# SPDX-License-Identifier: BSD-3-Clause
# Tests of the qcow2 driver; included from tests/Makefile.am.
QCOW2_C_TESTS = \
	test-qcow2-cow
TESTS += $(QCOW2_C_TESTS)
check_PROGRAMS += $(QCOW2_C_TESTS)

test_qcow2_cow_SOURCES = test-qcow2-cow.c engine-test.h
test_qcow2_cow_CFLAGS = $(TEST_CFLAGS)
test_qcow2_cow_LDADD = $(ENGINE_LIBS)
