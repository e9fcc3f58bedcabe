# SPDX-License-Identifier: BSD-3-Clause
# Tests of the server; included from tests/Makefile.am.
SERVER_TESTS = \
	test-backing-confine.sh \
	test-server-buffer-reuse.sh \
	test-registry-aliases.sh \
	test-registry-clone.sh \
	test-registry-control.sh \
	test-registry-dir.sh \
	test-registry-golden.sh \
	test-registry-scale.sh \
	test-server-aio.sh \
	test-server-captive.sh \
	test-server-cow-dense.sh \
	test-server-cow-fill.sh \
	test-server-emfile.sh \
	test-server-idle-cpu.sh \
	test-server-io.sh \
	test-server-lead-guard.sh \
	test-lock-qemu.sh \
	test-server-limits.sh \
	test-server-listen.sh \
	test-server-malformed.sh \
	test-server-max-inflight.sh \
	test-server-metrics-prometheus.sh \
	test-server-metrics-promtool.sh \
	test-server-log.sh \
	test-server-notify.sh \
	test-server-nbdcopy.sh \
	test-server-names.sh \
	test-server-nbdinfo.sh \
	test-server-options.sh \
	test-server-pipelines.sh \
	test-server-probe.sh \
	test-server-qemu.sh \
	test-server-sighup.sh \
	test-server-sigterm.sh \
	test-server-slow-reader.sh \
	test-server-sparse-alloc.sh \
	test-server-start-rss.sh \
	test-server-thin-cache.sh \
	test-server-thin-compact.sh \
	test-server-thin-l1.sh \
	test-server-tls-deadline.sh \
	test-server-tls-psk.sh \
	test-server-tls-stall.sh \
	test-server-tls-x509.sh \
	test-server-zerocopy.sh \
	test-server-writer-stress.sh
TESTS += $(SERVER_TESTS)
EXTRA_DIST += \
	$(SERVER_TESTS) \
	test-server-aio.py \
	test-server-buffer-reuse.py \
	test-server-io.py \
	test-server-limits.py \
	nbdraw.py \
	clone-connect.py \
	test-server-malformed.py \
	test-server-max-inflight.py \
	test-server-sighup.py \
	test-server-sigterm.py \
	test-server-slow-reader.py \
	tls-reqd.py \
	test-server-tls-stall.py \
	server-functions.sh \
	metrics-functions.sh \
	tls-functions.sh
