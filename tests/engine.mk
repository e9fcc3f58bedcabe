# SPDX-License-Identifier: BSD-3-Clause
# Tests of the format engine; included from tests/Makefile.am.
# Tests built once per format (see engine-test.h), then the others.
ENGINE_TESTS = \
	test-engine-cow-qed test-engine-cow-qcow2 test-engine-cow-raw \
	test-engine-threads-qed test-engine-threads-qcow2 \
	test-engine-threads-raw \
	test-engine-evict-qed test-engine-evict-qcow2 \
	test-engine-crash-qed test-engine-crash-qcow2-lazy \
	test-engine-crash-qcow2-nolazy \
	test-engine-repair-qed test-engine-repair-qcow2 \
	test-engine-nowait-qed test-engine-nowait-qcow2 test-engine-nowait-raw \
	test-engine-spec-vs-qemu-qed test-engine-spec-vs-qemu-qcow2 \
	test-engine-probe \
	test-engine-compress \
	test-engine-basecache \
	test-engine-basecache-crash \
	test-engine-basecache-ra \
	test-unit-metacache \
	test-unit-metacache-compact
TESTS += $(ENGINE_TESTS)
check_PROGRAMS += $(ENGINE_TESTS)
EXTRA_DIST += engine-test.h basecache-test.h

# A test built per format: one source, -DTEST_FORMAT naming the format.
QED = -DTEST_FORMAT='"qed"'
QCOW2 = -DTEST_FORMAT='"qcow2"'
RAW = -DTEST_FORMAT='"raw"'

test_engine_cow_qed_SOURCES = test-engine-cow.c engine-test.h
test_engine_cow_qed_CFLAGS = $(TEST_CFLAGS) $(QED)
test_engine_cow_qed_LDADD = $(ENGINE_LIBS)
test_engine_cow_qcow2_SOURCES = test-engine-cow.c engine-test.h
test_engine_cow_qcow2_CFLAGS = $(TEST_CFLAGS) $(QCOW2)
test_engine_cow_qcow2_LDADD = $(ENGINE_LIBS)
test_engine_cow_raw_SOURCES = test-engine-cow.c engine-test.h
test_engine_cow_raw_CFLAGS = $(TEST_CFLAGS) $(RAW)
test_engine_cow_raw_LDADD = $(ENGINE_LIBS)
test_engine_threads_qed_SOURCES = test-engine-threads.c engine-test.h
test_engine_threads_qed_CFLAGS = $(TEST_CFLAGS) $(QED)
test_engine_threads_qed_LDADD = $(ENGINE_LIBS)
test_engine_threads_qcow2_SOURCES = test-engine-threads.c engine-test.h
test_engine_threads_qcow2_CFLAGS = $(TEST_CFLAGS) $(QCOW2)
test_engine_threads_qcow2_LDADD = $(ENGINE_LIBS)
test_engine_threads_raw_SOURCES = test-engine-threads.c engine-test.h
test_engine_threads_raw_CFLAGS = $(TEST_CFLAGS) $(RAW)
test_engine_threads_raw_LDADD = $(ENGINE_LIBS)
test_engine_evict_qed_SOURCES = test-engine-evict.c engine-test.h
test_engine_evict_qed_CFLAGS = $(TEST_CFLAGS) $(QED)
test_engine_evict_qed_LDADD = $(ENGINE_LIBS)
test_engine_evict_qcow2_SOURCES = test-engine-evict.c engine-test.h
test_engine_evict_qcow2_CFLAGS = $(TEST_CFLAGS) $(QCOW2)
test_engine_evict_qcow2_LDADD = $(ENGINE_LIBS)
test_engine_crash_qed_SOURCES = test-engine-crash.c engine-test.h
test_engine_crash_qed_CFLAGS = $(TEST_CFLAGS) $(QED)
test_engine_crash_qed_LDADD = $(ENGINE_LIBS)
test_engine_crash_qcow2_lazy_SOURCES = test-engine-crash.c engine-test.h
test_engine_crash_qcow2_lazy_CFLAGS = $(TEST_CFLAGS) $(QCOW2) -DTEST_LAZY=1
test_engine_crash_qcow2_lazy_LDADD = $(ENGINE_LIBS)
test_engine_crash_qcow2_nolazy_SOURCES = test-engine-crash.c engine-test.h
test_engine_crash_qcow2_nolazy_CFLAGS = $(TEST_CFLAGS) $(QCOW2) -DTEST_LAZY=0
test_engine_crash_qcow2_nolazy_LDADD = $(ENGINE_LIBS)
test_engine_repair_qed_SOURCES = test-engine-repair.c engine-test.h
test_engine_repair_qed_CFLAGS = $(TEST_CFLAGS) $(QED)
test_engine_repair_qed_LDADD = $(ENGINE_LIBS)
test_engine_repair_qcow2_SOURCES = test-engine-repair.c engine-test.h
test_engine_repair_qcow2_CFLAGS = $(TEST_CFLAGS) $(QCOW2)
test_engine_repair_qcow2_LDADD = $(ENGINE_LIBS)
test_engine_spec_vs_qemu_qed_SOURCES = test-engine-spec-vs-qemu.c \
	engine-test.h
test_engine_spec_vs_qemu_qed_CFLAGS = $(TEST_CFLAGS) $(QED)
test_engine_spec_vs_qemu_qed_LDADD = $(ENGINE_LIBS)
test_engine_spec_vs_qemu_qcow2_SOURCES = test-engine-spec-vs-qemu.c \
	engine-test.h
test_engine_spec_vs_qemu_qcow2_CFLAGS = $(TEST_CFLAGS) $(QCOW2)
test_engine_spec_vs_qemu_qcow2_LDADD = $(ENGINE_LIBS)
test_engine_nowait_qed_SOURCES = test-engine-nowait.c engine-test.h
test_engine_nowait_qed_CFLAGS = $(TEST_CFLAGS) $(QED)
test_engine_nowait_qed_LDADD = $(ENGINE_LIBS)
test_engine_nowait_qcow2_SOURCES = test-engine-nowait.c engine-test.h
test_engine_nowait_qcow2_CFLAGS = $(TEST_CFLAGS) $(QCOW2)
test_engine_nowait_qcow2_LDADD = $(ENGINE_LIBS)
test_engine_nowait_raw_SOURCES = test-engine-nowait.c engine-test.h
test_engine_nowait_raw_CFLAGS = $(TEST_CFLAGS) $(RAW)
test_engine_nowait_raw_LDADD = $(ENGINE_LIBS)
test_unit_metacache_SOURCES = test-unit-metacache.c
test_unit_metacache_CFLAGS = $(TEST_CFLAGS)
test_unit_metacache_LDADD = $(ENGINE_LIBS)
test_unit_metacache_compact_SOURCES = test-unit-metacache-compact.c
test_unit_metacache_compact_CFLAGS = $(TEST_CFLAGS)
test_unit_metacache_compact_LDADD = $(ENGINE_LIBS)
test_engine_compress_SOURCES = test-engine-compress.c engine-test.h
test_engine_compress_CFLAGS = $(TEST_CFLAGS)
test_engine_compress_LDADD = $(ENGINE_LIBS)
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
test_engine_basecache_ra_SOURCES = test-engine-basecache-ra.c \
	basecache-test.h engine-test.h
test_engine_basecache_ra_CFLAGS = $(TEST_CFLAGS)
test_engine_basecache_ra_LDADD = $(ENGINE_LIBS)
