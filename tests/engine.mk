# SPDX-License-Identifier: BSD-3-Clause
# Tests of the format engine; included from tests/Makefile.am.
ENGINE_TESTS = \
	test-engine-cow \
	test-engine-threads \
	test-engine-evict \
	test-engine-crash \
	test-engine-repair \
	test-engine-nowait \
	test-engine-spec-vs-qemu \
	test-engine-probe \
	test-engine-basecache \
	test-engine-basecache-crash \
	test-unit-metacache
TESTS += $(ENGINE_TESTS)
check_PROGRAMS += $(ENGINE_TESTS)
EXTRA_DIST += engine-test.h basecache-test.h

test_engine_cow_SOURCES = test-engine-cow.c engine-test.h
test_engine_cow_CFLAGS = $(TEST_CFLAGS)
test_engine_cow_LDADD = $(ENGINE_LIBS)
test_engine_threads_SOURCES = test-engine-threads.c engine-test.h
test_engine_threads_CFLAGS = $(TEST_CFLAGS)
test_engine_threads_LDADD = $(ENGINE_LIBS)
test_engine_evict_SOURCES = test-engine-evict.c engine-test.h
test_engine_evict_CFLAGS = $(TEST_CFLAGS)
test_engine_evict_LDADD = $(ENGINE_LIBS)
test_engine_crash_SOURCES = test-engine-crash.c engine-test.h
test_engine_crash_CFLAGS = $(TEST_CFLAGS)
test_engine_crash_LDADD = $(ENGINE_LIBS)
test_engine_repair_SOURCES = test-engine-repair.c engine-test.h
test_engine_repair_CFLAGS = $(TEST_CFLAGS)
test_engine_repair_LDADD = $(ENGINE_LIBS)
test_engine_spec_vs_qemu_SOURCES = test-engine-spec-vs-qemu.c engine-test.h
test_engine_spec_vs_qemu_CFLAGS = $(TEST_CFLAGS)
test_engine_spec_vs_qemu_LDADD = $(ENGINE_LIBS)
test_engine_nowait_SOURCES = test-engine-nowait.c engine-test.h
test_engine_nowait_CFLAGS = $(TEST_CFLAGS)
test_engine_nowait_LDADD = $(ENGINE_LIBS)
test_unit_metacache_SOURCES = test-unit-metacache.c
test_unit_metacache_CFLAGS = $(TEST_CFLAGS)
test_unit_metacache_LDADD = $(ENGINE_LIBS)
test_engine_probe_SOURCES = test-engine-probe.c engine-test.h
test_engine_probe_CFLAGS = $(TEST_CFLAGS)
test_engine_probe_LDADD = $(ENGINE_LIBS)
test_engine_basecache_SOURCES = test-engine-basecache.c basecache-test.h \
	engine-test.h
test_engine_basecache_CFLAGS = $(TEST_CFLAGS)
test_engine_basecache_LDADD = $(ENGINE_LIBS)
test_engine_basecache_crash_SOURCES = test-engine-basecache-crash.c \
	basecache-test.h engine-test.h
test_engine_basecache_crash_CFLAGS = $(TEST_CFLAGS)
test_engine_basecache_crash_LDADD = $(ENGINE_LIBS)
