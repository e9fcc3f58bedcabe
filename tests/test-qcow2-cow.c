/* SPDX-License-Identifier: BSD-3-Clause */
/* Copy on write in the qcow2 driver, against a model of the guest's view,
 * for several kinds of image: version 3 with lazy refcounts on and off,
 * version 2, refcount widths 1, 8, 16 and 64, clusters from 512 bytes to
 * 8 KiB (small clusters make small L2 tables, so that writes straddle
 * them, and make the refcount structure grow: new refcount blocks and a
 * refcount table moved to the end of the file).
 *
 * Each case: partial writes fill both ends of a new cluster from the
 * backing image; writes straddle clusters, L2 tables and the backing
 * image's end; zero clusters hide backing data; a write into a zero
 * cluster fills with zeros; trim and zero with and without may-trim; an
 * image without a backing file where trim and zero unmap; close and
 * reopen.  The result must read back identically through qemu-img
 * compare, pass qemu-img check with nothing at all to report, and be
 * marked clean.
 */
#include <config.h>

#include "engine-test.h"

struct config {
  const char *compat;
  int lazy;
  unsigned refcount_bits;
  uint64_t cs;
};

static const struct config configs[] = {
  { "1.1", 1, 16, 4096 },
  { "1.1", 0, 16, 4096 },
  { "0.10", 0, 16, 4096 },
  { "1.1", 1, 1, 512 },
  { "1.1", 0, 8, 1024 },
  { "1.1", 1, 64, 8192 },
};

static const struct config *cf;
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

static void
expect_extent (uint64_t offset, unsigned flags, unsigned depth)
{
  struct image_extent e;

  CHECK (image_extents (img, cs, offset, IMAGE_EXTENTS_ONE, first_extent,
                        &e));
  if (e.flags != flags || e.depth != depth)
    die ("extent at %" PRIu64 ": flags %u depth %u, expected flags %u "
         "depth %u", offset, e.flags, e.depth, flags, depth);
}

static void
write_raw (const char *file, const uint8_t *buf, uint64_t len)
{
  FILE *fp = fopen (file, "w");

  if (fp == NULL || fwrite (buf, 1, len, fp) != len || fclose (fp) != 0)
    die ("writing %s", file);
}

static void
bounds_and_readonly (const char *file)
{
  uint8_t b[512];
  struct image *ro;

  if (image_pread (img, b, 512, size - 511) != -1 || image_errno () != EINVAL)
    die ("read past the end: expected EINVAL");
  if (image_pwrite (img, b, 1, size, 0) != -1 || image_errno () != ENOSPC)
    die ("write past the end: expected ENOSPC");
  /* img holds the file open for writing: another open must share. */
  ro = open_image (file, IMAGE_OPEN_READONLY | IMAGE_OPEN_FORCE_SHARE, 0);
  if (image_pwrite (ro, b, 1, 0, 0) != -1 || image_errno () != EROFS)
    die ("write to a read-only image: expected EROFS");
  CHECK (image_close (ro));
}

/* The image must equal the model through qemu, pass its check without a
 * word, and be clean. */
static void
qemu_agrees (const char *file)
{
  qemu_img_check_clean (file);
  write_raw (path ("model.raw"), model, size);
  if (run ("qemu-img compare -q -f qcow2 -F raw '%s' '%s'", file,
           path ("model.raw")) != 0)
    die ("qemu-img compare: %s differs from the model", file);
  if (strcmp (cf->compat, "1.1") == 0 &&
      run ("qemu-img info --output=json '%s' | grep -q '\"dirty-flag\": "
           "false'", file) != 0)
    die ("%s is still marked dirty after a clean close", file);
}

static void
overlay_case (void)
{
  const char *ov = path ("ov.qcow2");
  bool v3 = strcmp (cf->compat, "1.1") == 0;
  uint8_t *base = malloc (bsize);

  fill_pattern (base, bsize, 0, 1);
  write_raw (path ("base.raw"), base, bsize);
  memset (model, 0, size);
  memcpy (model, base, bsize);
  free (base);

  create_qcow2 (ov, size, "base.raw", (uint32_t) cs, cf->lazy, cf->compat,
                cf->refcount_bits);
  img = open_image (ov, 0, 0);
  verify_image (img, model, size, "fresh overlay");
  expect_extent (0, IMAGE_EXTENT_DATA | IMAGE_EXTENT_PRESENT, 1);
  expect_extent (bsize, IMAGE_EXTENT_ZERO, 0);

  do_write (3 * cs + cs / 4, 100, 2, "COW at both ends of a cluster");
  expect_extent (3 * cs, IMAGE_EXTENT_DATA | IMAGE_EXTENT_PRESENT, 0);
  do_write (5 * cs - 10, 20, 3, "write straddling two clusters");
  do_write (l2cov - 6000, 12000, 4, "write straddling two L2 tables");
  do_write (bsize - 3000, 6000, 5, "write across the backing end");
  do_write (40 * cs + 123, 65536, 6, "64 KiB unaligned write");
  do_write (40 * cs + 500, 3000, 7, "overwrite of allocated clusters");

  do_zero (16 * cs, 3 * cs, 0, "zero clusters over backing data");
  if (v3)
    expect_extent (16 * cs, IMAGE_EXTENT_ZERO | IMAGE_EXTENT_PRESENT, 0);
  do_zero (20 * cs + 100, 200, 0, "partial zero over backing data");
  do_zero (bsize + 4 * cs, cs, 0, "zero past the backing end");
  do_zero (24 * cs, cs, 0, "zero cluster");
  do_write (24 * cs + cs / 8, 10, 8, "write into a zero cluster");

  do_trim (3 * cs, 2 * cs);
  do_trim (7 * cs + 17, 100);
  do_trim (40 * cs, 4 * cs);
  do_zero (44 * cs, 2 * cs, IMAGE_MAY_TRIM, "zero with may-trim in place");
  do_zero (46 * cs, cs, 0, "zero without may-trim in place");
  do_write (46 * cs + 7, 33, 9, "write into a kept zero cluster");
  do_zero (2 * l2cov + 3, 5 * cs, IMAGE_MAY_TRIM, "unaligned zero, may trim");

  bounds_and_readonly (ov);
  CHECK (image_flush (img));
  CHECK (image_close (img));
  img = open_image (ov, 0, 0);
  verify_image (img, model, size, "after close and reopen");
  do_write (size - 5000, 5000, 10, "write at the end after reopen");
  CHECK (image_close (img));
  qemu_agrees (ov);
}

/* No backing file: trim and zero may unmap clusters outright. */
static void
standalone_case (void)
{
  const char *st = path ("st.qcow2");

  memset (model, 0, size);
  create_qcow2 (st, size, NULL, (uint32_t) cs, cf->lazy, cf->compat,
                cf->refcount_bits);
  img = open_image (st, 0, 0);
  do_write (0, 10 * cs, 11, "first clusters");
  do_write (l2cov - cs, 2 * cs + 1, 12, "across an L2 table");
  do_trim (2 * cs, 3 * cs);
  expect_extent (2 * cs, IMAGE_EXTENT_ZERO, 0);
  do_zero (6 * cs, 2 * cs, IMAGE_MAY_TRIM, "zero with may-trim, no backing");
  do_zero (8 * cs + 1, cs, 0, "partial zero, no backing");
  do_write (3 * cs + 5, 10, 13, "write into a trimmed cluster");
  CHECK (image_close (img));
  qemu_agrees (st);
}

int
main (int argc, char *argv[])
{
  size_t i;

  test_init (argv[0]);
  for (i = 0; i < sizeof configs / sizeof configs[0]; i++) {
    cf = &configs[i];
    cs = cf->cs;
    l2cov = cs * (cs / 8);
    size = MAX ((uint64_t) 8 << 20, 2 * l2cov + (1 << 20));
    bsize = size / 4 * 3;
    model = malloc (size);
    if (model == NULL)
      die ("out of memory");
    printf ("compat=%s lazy_refcounts=%d refcount_bits=%u cluster_size=%"
            PRIu64 "\n", cf->compat, cf->lazy, cf->refcount_bits, cs);
    fflush (stdout);
    overlay_case ();
    standalone_case ();
    free (model);
  }
  test_cleanup ();
  printf ("qcow2 copy on write: ok\n");
  return 0;
}
