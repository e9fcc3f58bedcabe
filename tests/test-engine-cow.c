/* SPDX-License-Identifier: BSD-3-Clause */
/* Copy on write, against a model of the guest's view, built once per
 * format (test-engine-cow-qed, -qcow2, -raw) and run over that format's
 * kinds of image: QED with 4 KiB clusters and 2-cluster tables (an L2
 * table maps 4 MiB); qcow2 version 3 with lazy refcounts on and off,
 * version 2, refcount widths 1, 8, 16 and 64, clusters from 512 bytes to
 * 8 KiB (small clusters make small L2 tables, so that writes straddle
 * them, and make the refcount structure grow: new refcount blocks and a
 * refcount table moved to the end of the file).  (QED tables of one
 * cluster, which the specification allows, are avoided: qemu 7.2 cannot
 * open them, see test-engine-spec-vs-qemu.)
 *
 * Each case, over a raw backing file that ends before the image does:
 * partial writes fill both ends of a new cluster from the backing image;
 * writes straddle clusters, L2 tables and the backing image's end; zero
 * clusters hide backing data; a write into a zero cluster fills with
 * zeros (as the QED specification says; qemu 7.2 fills from the backing
 * file, see test-engine-spec-vs-qemu); trim and zero with and without
 * may-trim; bounds, sharing and read-only errors; close and reopen.
 * Then an image without a backing file (the only case raw has), where
 * trim and zero may unmap.  The result must read back identically
 * through qemu-img compare, pass qemu-img check with nothing to report,
 * and be marked clean.
 */
#include <config.h>

#include "engine-test.h"

#define QCOW2(cs_, lazy_, compat_, bits_)                          \
  { .format = "qcow2", .cs = (cs_), .lazy = (lazy_),               \
    .compat = (compat_), .refcount_bits = (bits_) }

static const struct fmt_case cases[] = {
  { .format = "qed", .cs = 4096, .qed_tables = 2, .lazy = -1 },
  QCOW2 (4096, 1, "1.1", 16), QCOW2 (4096, 0, "1.1", 16),
  QCOW2 (4096, 0, "0.10", 16), QCOW2 (512, 1, "1.1", 1),
  QCOW2 (1024, 0, "1.1", 8), QCOW2 (8192, 1, "1.1", 64),
  { .format = "raw", .cs = 4096, .lazy = -1 },
};
static const struct fmt_case *cf;
static uint64_t cs, size, bsize, l2cov;
static uint8_t *model;
static struct image *img;

static void
do_write (uint64_t offset, uint64_t len, unsigned seed, const char *what)
{
  uint8_t *buf = malloc (len);

  fill_pattern (buf, len, offset, seed);
  CHECK (image_pwrite (img, buf, len, offset, 0));
  memcpy (model + offset, buf, len);
  free (buf);
  verify_image (img, model, size, what);
}

static void
do_zero (uint64_t offset, uint64_t len, unsigned flags, const char *what)
{
  CHECK (image_zero (img, len, offset, flags));
  memset (model + offset, 0, len);
  verify_image (img, model, size, what);
}

/* Trim leaves each byte as it was or zero; the model takes what is read. */
static void
do_trim (uint64_t offset, uint64_t len)
{
  uint8_t *buf = malloc (len);
  uint64_t i;

  CHECK (image_trim (img, len, offset, 0));
  CHECK (image_pread (img, buf, len, offset));
  for (i = 0; i < len; i++)
    if (buf[i] != 0 && buf[i] != model[offset + i])
      die ("trim: byte %" PRIu64 " became 0x%02x", offset + i, buf[i]);
  memcpy (model + offset, buf, len);
  free (buf);
  verify_image (img, model, size, "after trim");
}

static int
first_extent (void *opaque, const struct image_extent *e)
{
  *(struct image_extent *) opaque = *e;
  return 0;
}

/* The cluster at offset is described whole by one extent like this. */
static void
expect_extent (uint64_t offset, unsigned flags, unsigned depth)
{
  struct image_extent e;

  CHECK (image_extents (img, cs, offset, IMAGE_EXTENTS_ONE, first_extent,
                        &e));
  if (e.flags != flags || e.depth != depth || e.length < cs)
    die ("extent at %" PRIu64 ": flags %u depth %u length %" PRIu64
         ", expected flags %u depth %u length %" PRIu64, offset, e.flags,
         e.depth, e.length, flags, depth, cs);
}

/* What a trimmed cluster of an image without a backing file is: qcow2
 * unmaps it; QED keeps it mapped over a punched host range (it has no
 * free space map to give the cluster back to); raw is a hole of the
 * host file. */
static unsigned
trimmed_flags (void)
{
  if (fmt_is ("qcow2"))
    return IMAGE_EXTENT_ZERO;
  if (fmt_is ("qed"))
    return IMAGE_EXTENT_DATA | IMAGE_EXTENT_PRESENT;
  return IMAGE_EXTENT_ZERO | IMAGE_EXTENT_PRESENT;
}

/* Zero clusters: all but qcow2 version 2 have them. */
static bool
has_zero_clusters (void)
{
  return !(cf->compat && strcmp (cf->compat, "0.10") == 0);
}

static void
bounds_and_readonly (const char *file)
{
  struct image_open_opts o = {
    .format = test_format, .flags = IMAGE_OPEN_READONLY,
  };
  uint8_t b[512];
  struct image *ro;

  if (image_pread (img, b, 512, size - 511) != -1 || image_errno () != EINVAL)
    die ("read past the end: expected EINVAL");
  if (image_pwrite (img, b, 1, size, 0) != -1 || image_errno () != ENOSPC)
    die ("write past the end: expected ENOSPC");
  if (image_zero (img, 2, UINT64_MAX, 0) != -1 || image_errno () != ENOSPC)
    die ("zero with an overflowing range: expected ENOSPC");
  CHECK (image_pread (img, b, 0, size));  /* empty read at the end */

  /* img holds the file open for writing: a second open, even in this
   * process, is refused unless it shares (as qemu-img -U). */
  if (image_open (file, &o) != NULL || image_errno () != EBUSY)
    die ("read-only open of an image open for writing: expected EBUSY");
  ro = open_fmt (file, IMAGE_OPEN_READONLY | IMAGE_OPEN_FORCE_SHARE, 0);
  if (image_pwrite (ro, b, 1, 0, 0) != -1 || image_errno () != EROFS)
    die ("write to a read-only image: expected EROFS");
  CHECK (image_close (ro));
}

/* The image must equal the model through qemu, pass its check without a
 * word, and be clean. */
static void
qemu_agrees (const char *file)
{
  fmt_check_clean (file);
  write_file (path ("model.raw"), model, size);
  if (run ("qemu-img compare -q -f %s -F raw '%s' '%s'", test_format, file,
           path ("model.raw")) != 0)
    die ("qemu-img compare: %s differs from the model", file);
  fmt_expect_clean_flag (file, cf);
}

static void
overlay_writes (void)
{
  do_write (3 * cs + cs / 4, 100, 2, "COW at both ends of a cluster");
  expect_extent (3 * cs, IMAGE_EXTENT_DATA | IMAGE_EXTENT_PRESENT, 0);
  do_write (5 * cs - 10, 20, 3, "write straddling two clusters");
  do_write (l2cov - 6000, 12000, 4, "write straddling two L2 tables");
  do_write (bsize - 3000, 6000, 5, "write across the backing end");
  do_write (40 * cs + 123, 65536, 6, "64 KiB unaligned write");
  do_write (40 * cs + 500, 3000, 7, "overwrite of allocated clusters");
}

static void
overlay_zeroes (void)
{
  do_zero (16 * cs, 3 * cs, 0, "zero clusters over backing data");
  if (has_zero_clusters ())
    expect_extent (16 * cs, IMAGE_EXTENT_ZERO | IMAGE_EXTENT_PRESENT, 0);
  do_zero (20 * cs + 100, 200, 0, "partial zero over backing data");
  do_zero (bsize + 4 * cs, cs, 0, "zero past the backing end");
  /* The QED specification: a write into a zero cluster fills the rest of
   * the new cluster with zeros. */
  do_zero (24 * cs, cs, 0, "zero cluster");
  do_write (24 * cs + cs / 8, 10, 8, "write into a zero cluster");

  do_trim (3 * cs, 2 * cs);
  do_trim (7 * cs + 17, 100);
  do_trim (40 * cs, 4 * cs);
  do_zero (44 * cs, 2 * cs, IMAGE_MAY_TRIM, "zero with may-trim in place");
  do_zero (46 * cs, cs, 0, "zero without may-trim in place");
  do_write (46 * cs + 7, 33, 9, "write into a kept zero cluster");
  do_zero (2 * l2cov + 3, 5 * cs, IMAGE_MAY_TRIM, "unaligned zero, may trim");
}

static void
overlay_case (void)
{
  const char *ov = path ("ov.img");
  uint8_t *base = malloc (bsize);

  fill_pattern (base, bsize, 0, 1);
  write_file (path ("base.raw"), base, bsize);
  memset (model, 0, size);
  memcpy (model, base, bsize);           /* the rest reads as zeros */
  free (base);

  create_fmt (ov, size, "base.raw", cf);
  img = open_fmt (ov, 0, 0);
  verify_image (img, model, size, "fresh overlay");
  expect_extent (0, IMAGE_EXTENT_DATA | IMAGE_EXTENT_PRESENT, 1);
  expect_extent (bsize, IMAGE_EXTENT_ZERO, 0);
  overlay_writes ();
  overlay_zeroes ();

  bounds_and_readonly (ov);
  CHECK (image_flush (img));
  CHECK (image_close (img));
  img = open_fmt (ov, 0, 0);
  verify_image (img, model, size, "after close and reopen");
  do_write (size - 5000, 5000, 10, "write at the end after reopen");
  CHECK (image_close (img));
  qemu_agrees (ov);
}

/* No backing file: trim and zero may unmap clusters outright. */
static void
standalone_case (void)
{
  const char *st = path ("st.img");

  memset (model, 0, size);
  create_fmt (st, size, NULL, cf);
  img = open_fmt (st, 0, 0);
  do_write (0, 10 * cs, 11, "first clusters");
  do_write (l2cov - cs, 2 * cs + 1, 12, "across an L2 table");
  do_trim (2 * cs, 3 * cs);
  expect_extent (2 * cs, trimmed_flags (), 0);
  do_zero (6 * cs, 2 * cs, IMAGE_MAY_TRIM, "zero with may-trim, no backing");
  do_zero (8 * cs + 1, cs, 0, "partial zero, no backing");
  do_write (3 * cs + 5, 10, 13, "write into a trimmed cluster");
  bounds_and_readonly (st);
  CHECK (image_close (img));
  qemu_agrees (st);
}

int
main (int argc, char *argv[])
{
  test_init (argv[0]);
  FOR_EACH_FMT_CASE (cf, cases) {
    cs = fmt_cluster_size (cf);
    l2cov = fmt_l2_coverage (cf);
    size = MAX ((uint64_t) 8 << 20, 2 * l2cov + (1 << 20));
    bsize = size / 4 * 3;
    model = malloc (size);
    if (model == NULL)
      die ("out of memory");
    printf ("%s cluster_size=%" PRIu64 " compat=%s lazy_refcounts=%d "
            "refcount_bits=%u\n", test_format, cs,
            cf->compat ? cf->compat : "-", cf->lazy, cf->refcount_bits);
    fflush (stdout);
    if (!fmt_is ("raw"))
      overlay_case ();
    standalone_case ();
    free (model);
  }
  return test_done ("copy on write");
}
