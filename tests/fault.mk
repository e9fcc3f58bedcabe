# SPDX-License-Identifier: BSD-3-Clause
# Faults: failing syncs and writes injected by faultshim.so (preloaded
# into cowbd or nbdkit), a full disk, images whose tables point at their
# own metadata, and the power-loss simulator.  Included from
# tests/Makefile.am.
check_LTLIBRARIES += faultshim.la
faultshim_la_SOURCES = faultshim.c
faultshim_la_LDFLAGS = -module -avoid-version -shared -rpath $(abs_builddir)
faultshim_la_LIBADD = -ldl $(PTHREAD_LIBS)

FAULT_TESTS = \
	test-fault-enospc.sh \
	test-fault-flush.sh \
	test-fault-overlap.sh \
	test-fault-powercut.sh
TESTS += $(FAULT_TESTS)
EXTRA_DIST += $(FAULT_TESTS) fault-functions.sh \
	test-fault-enospc.py \
	test-fault-flush.py \
	test-fault-powercut.py \
	powercut.py

# The power-loss simulator, longer: more requests, more cuts, another
# seed.
check-powercut:
	$(MAKE) check TESTS=test-fault-powercut.sh \
	  POWERCUT_OPS=600 POWERCUT_CUTS=3000 POWERCUT_SEED=$${POWERCUT_SEED:-7}
.PHONY: check-powercut
