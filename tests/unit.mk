# SPDX-License-Identifier: BSD-3-Clause
# Unit tests of the helpers in common/ and of the server's header-only
# helpers; included from tests/Makefile.am.
UNIT_TESTS = \
	test-unit-byte-swapping \
	test-unit-checked-overflow \
	test-unit-iszero \
	test-unit-nbd-errno \
	test-unit-rounding \
	test-unit-size
TESTS += $(UNIT_TESTS)
check_PROGRAMS += $(UNIT_TESTS)

test_unit_byte_swapping_SOURCES = test-unit-byte-swapping.c
test_unit_byte_swapping_CFLAGS = $(TEST_CFLAGS)
test_unit_checked_overflow_SOURCES = test-unit-checked-overflow.c
test_unit_checked_overflow_CFLAGS = $(TEST_CFLAGS)
test_unit_iszero_SOURCES = test-unit-iszero.c
test_unit_iszero_CFLAGS = $(TEST_CFLAGS)
test_unit_nbd_errno_SOURCES = test-unit-nbd-errno.c
test_unit_nbd_errno_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/server
test_unit_nbd_errno_CFLAGS = $(TEST_CFLAGS)
test_unit_rounding_SOURCES = test-unit-rounding.c
test_unit_rounding_CFLAGS = $(TEST_CFLAGS)
test_unit_size_SOURCES = test-unit-size.c
test_unit_size_CFLAGS = $(TEST_CFLAGS)
test_unit_size_LDADD = $(top_builddir)/common/libcommon.la


# Documentation lint.
TESTS += test-man-pages.sh test-man-options.sh test-man-tls-recipe.sh
EXTRA_DIST += test-man-pages.sh test-man-options.sh test-man-tls-recipe.sh

# The fuzz targets' seeds and past crashes (fuzzing/corpus).
TESTS += test-fuzz-replay.sh
EXTRA_DIST += test-fuzz-replay.sh
