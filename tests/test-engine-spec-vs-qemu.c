/* SPDX-License-Identifier: BSD-3-Clause */
/* Where qemu 7.2 disagrees with a format's specification, we follow the
 * specification.  Each case: what the specification says, what we do
 * (asserted), and what qemu does (printed, not asserted, so that a fixed
 * qemu does not fail the test).  Built once per format (engine.mk):
 * case 1 runs for QED and qcow2, case 2 for QED only.
 *
 * 1. A write into a zero cluster.  The QED specification: "Writes to a
 *    zero data cluster cause a new data cluster to be allocated.  The new
 *    data cluster is populated with zeroes and the data being written."
 *    (qcow2's: a cluster whose entry has bit 0 set "reads as all zeros",
 *    so a partial write leaves the rest zero likewise.)  qemu 7.2's QED
 *    fills the rest of the cluster from the backing file instead, so data
 *    the guest zeroed comes back.  Reproduce with qemu-io 'write -z 0 64K'
 *    then 'write -P 0x77 4096 512' over a non-zero base.  The image we
 *    write must read zeros there through qemu too.
 *
 * 2. table_size = 1 (QED).  The specification allows table sizes from 1
 *    to 16 clusters; qemu 7.2 creates such images but cannot open them
 *    ("QED table offset is invalid": its overflow check rejects a table
 *    whose last cluster is its first).  We open, write and read them.
 *
 * 3. qemu-img check counts leaks beyond the end of a QED file once the
 *    file has cluster_size - 1 clusters or more (it divides by
 *    cluster_size - 1 when it converts bytes to clusters).  Our check
 *    counts the clusters that are there; the tests accept exactly qemu's
 *    surplus (engine-test.h, qemu_img_check_clean).
 */
#include <config.h>

#include "engine-test.h"

#define CS (64ULL << 10)

static const struct fmt_case defaults = { .format = TEST_FORMAT };

static void
zero_cluster_write (void)
{
  static uint8_t base[2 * CS], buf[CS];
  const char *ours = path ("ours." TEST_FORMAT);
  const char *theirs = path ("qemu." TEST_FORMAT);
  struct image *img;
  uint64_t i;

  memset (base, 0x11, sizeof base);
  write_file (path ("base.raw"), base, sizeof base);

  /* Ours. */
  create_fmt (ours, 2 * CS, "base.raw", &defaults);
  img = open_fmt (ours, 0, 0);
  CHECK (image_zero (img, CS, 0, 0));
  memset (buf, 0x77, 512);
  CHECK (image_pwrite (img, buf, 512, 4096, 0));
  CHECK (image_pread (img, buf, CS, 0));
  for (i = 0; i < CS; i++) {
    uint8_t want = (i >= 4096 && i < 4096 + 512) ? 0x77 : 0;
    if (buf[i] != want)
      die ("zero cluster write: byte %" PRIu64 " is 0x%02x, the "
           "specification says 0x%02x", i, buf[i], want);
  }
  CHECK (image_close (img));
  /* qemu reads what we wrote: zeros around the write. */
  if (run ("qemu-io -f %s -c 'read -q -P 0 0 4096' -c 'read -q -P 0x77 "
           "4096 512' -c 'read -q -P 0 4608 60928' '%s' | grep -q -i -e fail "
           "-e mismatch", test_format, ours) == 0)
    die ("qemu-io does not read zeros around our write into a zero cluster");
  fmt_check_clean (ours);

  /* qemu's, for the record. */
  if (run ("qemu-img create -q -f %s -b base.raw -F raw '%s' %llu && "
           "qemu-io -f %s -c 'write -q -z 0 64K' -c 'write -q -P 0x77 4096 "
           "512' '%s'", test_format, theirs, 2 * CS, test_format,
           theirs) != 0)
    die ("making qemu's image");
  if (run ("qemu-io -f %s -c 'read -q -P 0 0 4096' '%s' 2>&1 | "
           "grep -q -i -e fail -e mismatch", test_format, theirs) == 0)
    printf ("note: qemu %s fills a %s zero cluster from the backing file on "
            "a partial write (against the specification)\n", "7.2",
            test_format);
  else
    printf ("note: this qemu follows the %s specification for zero "
            "clusters\n", test_format);
}

static void
one_cluster_tables (void)
{
  struct image *img;
  uint8_t buf[4096], back[4096];

  create_image (path ("t1.qed"), "qed", 16 << 20, NULL, 4096, 1);
  img = open_image (path ("t1.qed"), 0, 0);
  fill_pattern (buf, sizeof buf, 0, 3);
  /* Offsets in different L2 tables (each covers 2 MiB). */
  CHECK (image_pwrite (img, buf, sizeof buf, 0, 0));
  CHECK (image_pwrite (img, buf, sizeof buf, 5 << 20, 0));
  CHECK (image_close (img));
  img = open_image (path ("t1.qed"), IMAGE_OPEN_READONLY, 0);
  CHECK (image_pread (img, back, sizeof back, 5 << 20));
  if (memcmp (buf, back, sizeof buf) != 0)
    die ("table_size=1: data read back differs");
  CHECK (image_close (img));
  if (run ("qemu-img info '%s' >/dev/null 2>&1", path ("t1.qed")) != 0)
    printf ("note: qemu cannot open QED images with table_size=1 (the "
            "specification allows 1 to 16)\n");
}

static test_case_fn *const qed_cases[] = {
  zero_cluster_write, one_cluster_tables, NULL,
};
static test_case_fn *const qcow2_cases[] = { zero_cluster_write, NULL };

int
main (int argc, char *argv[])
{
  (void) argc;
  return test_main (argv[0], "specification vs qemu",
                    fmt_is ("qed") ? qed_cases : qcow2_cases);
}
