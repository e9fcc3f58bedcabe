/* SPDX-License-Identifier: BSD-3-Clause */
/* Copy on write in the QED driver, against a model of the guest's view:
 * partial writes fill both ends of a new cluster from the backing image,
 * writes straddle clusters, L2 tables and the backing image's end, zero
 * clusters hide backing data (and a write into one fills with zeros, as
 * the QED specification says), trim, close and reopen.  The result must
 * read back identically through qemu-img and pass qemu-img check.
 *
 * Geometry: 4 KiB clusters and 2-cluster tables, so an L2 table covers
 * 4 MiB and the 8 MiB image spans two of them; the raw backing file is
 * 6 MiB, so the last 2 MiB read past its end.  (Tables of one cluster,
 * which the specification allows, are avoided: qemu 7.2 cannot open
 * them, see test-engine-spec-vs-qemu.sh.)
 */
#include <config.h>

#include "engine-test.h"

#define CS 4096ULL
#define SIZE (8ULL << 20)
#define BACKING_SIZE (6ULL << 20)

static uint8_t model[SIZE];
static struct image *img;

static void
do_write (uint64_t offset, uint64_t len, unsigned seed, const char *what)
{
  uint8_t *buf = malloc (len);

  fill_pattern (buf, len, offset, seed);
  CHECK (image_pwrite (img, buf, len, offset, 0));
  memcpy (model + offset, buf, len);
  free (buf);
  verify_image (img, model, SIZE, what);
}

static void
do_zero (uint64_t offset, uint64_t len, unsigned flags, const char *what)
{
  CHECK (image_zero (img, len, offset, flags));
  memset (model + offset, 0, len);
  verify_image (img, model, SIZE, what);
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
  verify_image (img, model, SIZE, "after trim");
}

static int
first_extent (void *opaque, const struct image_extent *e)
{
  *(struct image_extent *) opaque = *e;
  return 0;
}

static void
expect_extent (uint64_t offset, unsigned flags, unsigned depth,
               uint64_t min_len)
{
  struct image_extent e;

  CHECK (image_extents (img, CS, offset, IMAGE_EXTENTS_ONE, first_extent,
                        &e));
  if (e.flags != flags || e.depth != depth || e.length < MIN (min_len, CS))
    die ("extent at %" PRIu64 ": flags %u depth %u length %" PRIu64
         ", expected flags %u depth %u", offset, e.flags, e.depth, e.length,
         flags, depth);
}

static void
write_raw (const char *file, const uint8_t *buf, uint64_t len)
{
  FILE *fp = fopen (file, "w");

  if (fp == NULL || fwrite (buf, 1, len, fp) != len || fclose (fp) != 0)
    die ("writing %s", file);
}

static void
bounds_and_readonly (void)
{
  uint8_t b[512];
  struct image *ro;

  if (image_pread (img, b, 512, SIZE - 511) != -1 || image_errno () != EINVAL)
    die ("read past the end: expected EINVAL");
  if (image_pwrite (img, b, 1, SIZE, 0) != -1 || image_errno () != ENOSPC)
    die ("write past the end: expected ENOSPC");
  if (image_zero (img, 2, UINT64_MAX, 0) != -1 || image_errno () != ENOSPC)
    die ("zero with an overflowing range: expected ENOSPC");
  CHECK (image_pread (img, b, 0, SIZE));  /* empty read at the end */

  /* img holds ov.qed open for writing: a second open, even in this
   * process, is refused unless it shares (as qemu-img -U). */
  {
    struct image_open_opts o = { .flags = IMAGE_OPEN_READONLY };
    if (image_open (path ("ov.qed"), &o) != NULL || image_errno () != EBUSY)
      die ("read-only open of an image open for writing: expected EBUSY");
  }
  ro = open_image (path ("ov.qed"),
                   IMAGE_OPEN_READONLY | IMAGE_OPEN_FORCE_SHARE, 0);
  if (image_pwrite (ro, b, 1, 0, 0) != -1 || image_errno () != EROFS)
    die ("write to a read-only image: expected EROFS");
  CHECK (image_close (ro));
}

int
main (int argc, char *argv[])
{
  static uint8_t base[BACKING_SIZE];

  test_init (argv[0]);
  fill_pattern (base, BACKING_SIZE, 0, 1);
  write_raw (path ("base.raw"), base, BACKING_SIZE);
  memcpy (model, base, BACKING_SIZE);   /* the rest reads as zeros */

  create_image (path ("ov.qed"), "qed", SIZE, "base.raw", CS, 2);
  img = open_image (path ("ov.qed"), 0, 0);
  verify_image (img, model, SIZE, "fresh overlay");
  expect_extent (0, IMAGE_EXTENT_DATA | IMAGE_EXTENT_PRESENT, 1, CS);
  expect_extent (BACKING_SIZE, IMAGE_EXTENT_ZERO, 0, CS);

  do_write (3 * CS + 1000, 100, 2, "COW at both ends of a cluster");
  expect_extent (3 * CS, IMAGE_EXTENT_DATA | IMAGE_EXTENT_PRESENT, 0, CS);
  do_write (5 * CS - 10, 20, 3, "write straddling two clusters");
  do_write ((4 << 20) - 6000, 12000, 4, "write straddling two L2 tables");
  do_write (BACKING_SIZE - 3000, 6000, 5, "write across the backing end");
  do_write (40 * CS + 123, 65536, 6, "64 KiB unaligned write");
  do_write (40 * CS + 5000, 3000, 7, "overwrite of allocated clusters");

  do_zero (16 * CS, 3 * CS, 0, "zero clusters over backing data");
  expect_extent (16 * CS, IMAGE_EXTENT_ZERO | IMAGE_EXTENT_PRESENT, 0, CS);
  do_zero (20 * CS + 100, 200, 0, "partial zero over backing data");
  do_zero (BACKING_SIZE + 4 * CS, CS, 0, "zero past the backing end");

  /* The QED specification: a write into a zero cluster fills the rest of
   * the new cluster with zeros.  (qemu 7.2 fills it from the backing file
   * instead; see test-engine-spec-vs-qemu.sh.) */
  do_zero (24 * CS, CS, 0, "zero cluster");
  do_write (24 * CS + 500, 10, 8, "write into a zero cluster");

  do_trim (3 * CS, 2 * CS);
  do_trim (7 * CS + 17, 100);
  do_zero (40 * CS, 2 * CS, IMAGE_MAY_TRIM, "zero with may-trim in place");
  do_zero (42 * CS, CS, 0, "zero without may-trim in place");

  bounds_and_readonly ();

  CHECK (image_flush (img));
  CHECK (image_close (img));
  img = open_image (path ("ov.qed"), 0, 0);
  verify_image (img, model, SIZE, "after close and reopen");
  CHECK (image_close (img));

  qemu_img_check_clean (path ("ov.qed"));
  write_raw (path ("model.raw"), model, SIZE);
  if (run ("qemu-img compare -q -f qed -F raw '%s' '%s'", path ("ov.qed"),
           path ("model.raw")) != 0)
    die ("qemu-img compare: the image differs from the model");
  if (run ("qemu-img info --output=json '%s' | grep -q '\"dirty-flag\": false'",
           path ("ov.qed")) != 0)
    die ("the image is still marked dirty after a clean close");

  test_cleanup ();
  printf ("engine copy on write: ok\n");
  return 0;
}
