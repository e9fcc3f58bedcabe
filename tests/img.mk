# SPDX-License-Identifier: BSD-3-Clause
# Tests of cowbd-img; included from tests/Makefile.am.  Each test checks
# cowbd-img against tools nobody here wrote (qemu-img, qemu-io); the
# helpers they share are in img-functions.sh.
IMG_TESTS = \
	test-img-help.sh \
	test-img-create.sh \
	test-img-create-options.sh \
	test-img-info.sh \
	test-img-map.sh \
	test-img-check.sh \
	test-img-bad-input.sh \
	test-img-bad-l2.sh \
	test-backing-type.sh \
	test-img-create-progress.sh \
	test-img-convert.sh \
	test-img-convert-opts.sh \
	test-img-convert-nbd.sh \
	test-img-size-fraction.sh \
	test-img-compare.sh \
	test-img-commit.sh \
	test-img-rebase.sh \
	test-img-probe.sh \
	test-img-interrupt.sh \
	test-img-lock.sh \
	test-img-resize.sh \
	test-img-resize-crash.sh \
	test-img-measure.sh \
	test-img-info-chain.sh \
	test-img-snapshot-list.sh \
	test-img-snapshot.sh \
	test-img-snapshot-crash.sh \
	test-img-amend.sh \
	test-img-convert-compress.sh
TESTS += $(IMG_TESTS)
EXTRA_DIST += $(IMG_TESTS) img-functions.sh
