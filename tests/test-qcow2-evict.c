/* SPDX-License-Identifier: BSD-3-Clause */
/* qcow2 with a metadata cache much smaller than the working set: random
 * writes, zeroes, trims and reads with room for 4 L2 tables and 4
 * refcount blocks, so that dirty tables and blocks are written back and
 * evicted all the time, across chains of mixed formats:
 *
 *   A. qcow2 (512-byte clusters, 64-bit refcounts, lazy refcounts) over a
 *      QED image: a refcount block covers only 32 KiB of file and the
 *      refcount table only 2 MiB per cluster, so new blocks are appended
 *      all the time and the table itself moves to the end of the file
 *      several times (checked);
 *   B. qcow2 (4 KiB clusters, 16-bit refcounts, no lazy refcounts) over
 *      a qcow2 image.
 *
 * Everything is checked against a model, after close and reopen, through
 * qemu-img compare, and with qemu-img check.
 */
#include <config.h>

#include <fcntl.h>

#include "engine-test.h"
#include "byte-swapping.h"

#define SIZE (32ULL << 20)
#define OPS 3000

static uint8_t model[SIZE];

static void
random_ops (struct image *img, uint64_t cs)
{
  static uint8_t buf[3 * 4096];
  unsigned i;

  for (i = 0; i < OPS; i++) {
    uint64_t len = 1 + rnd_below (MIN (sizeof buf, 3 * cs));
    uint64_t off = rnd_below (SIZE - len);
    unsigned kind = (unsigned) rnd_below (20);

    if (kind < 11) {
      fill_pattern (buf, len, off, 100 + i);
      CHECK (image_pwrite (img, buf, len, off, 0));
      memcpy (model + off, buf, len);
    }
    else if (kind < 13) {
      CHECK (image_zero (img, len, off, kind == 11 ? IMAGE_MAY_TRIM : 0));
      memset (model + off, 0, len);
    }
    else if (kind < 14) {
      /* Trim: each byte stays or reads zero; the model follows. */
      uint64_t j;
      CHECK (image_trim (img, len, off, 0));
      CHECK (image_pread (img, buf, len, off));
      for (j = 0; j < len; j++)
        if (buf[j] && buf[j] != model[off + j])
          die ("op %u: trim changed byte %" PRIu64, i, off + j);
      memcpy (model + off, buf, len);
    }
    else {
      CHECK (image_pread (img, buf, len, off));
      if (memcmp (buf, model + off, len) != 0)
        die ("op %u: read of %" PRIu64 " bytes at %" PRIu64 " differs", i,
             len, off);
    }
    if (i % 500 == 499)
      CHECK (image_flush (img));
  }
}

static uint64_t
refcount_table_offset (const char *file)
{
  uint8_t b[8];
  int fd = open (file, O_RDONLY);

  if (fd == -1 || pread (fd, b, 8, 48) != 8)
    die ("reading the header of %s", file);
  close (fd);
  return be64_load (b);
}

/* Data every 3 MiB in the base, so some L2 ranges of the overlay read
 * through to it and some do not. */
static void
make_base (const char *file)
{
  struct image *img = open_image (file, 0, 0);
  uint64_t off;

  memset (model, 0, SIZE);
  for (off = 0; off < SIZE; off += 3 << 20) {
    fill_pattern (model + off, 1 << 20, off, 1);
    CHECK (image_pwrite (img, model + off, 1 << 20, off, 0));
  }
  CHECK (image_close (img));
}

static void
run_chain (const char *base, const char *ov, uint64_t cs)
{
  struct image *img;
  FILE *fp;

  img = open_image (ov, 0, 1);  /* the smallest cache */
  random_ops (img, cs);
  verify_image (img, model, SIZE, "after random ops");
  CHECK (image_close (img));

  img = open_image (ov, 0, 1);
  verify_image (img, model, SIZE, "after reopen");
  random_ops (img, cs);                 /* again, on a used image */
  CHECK (image_close (img));

  qemu_img_check_clean (ov);
  qemu_img_check_clean (base);
  fp = fopen (path ("model.raw"), "w");
  if (fp == NULL || fwrite (model, 1, SIZE, fp) != SIZE || fclose (fp) != 0)
    die ("writing model.raw");
  if (run ("qemu-img compare -q -F raw '%s' '%s'", ov,
           path ("model.raw")) != 0)
    die ("qemu-img compare: %s differs from the model", ov);
}

int
main (int argc, char *argv[])
{
  uint64_t rt0;

  test_init (argv[0]);
  rng_seed ();

  /* A: qcow2 over QED, the refcount structure growing. */
  create_image (path ("a-base.qed"), "qed", SIZE, NULL, 4096, 2);
  make_base (path ("a-base.qed"));
  create_qcow2 (path ("a.qcow2"), SIZE, "a-base.qed", 512, 1, "1.1", 64);
  rt0 = refcount_table_offset (path ("a.qcow2"));
  run_chain (path ("a-base.qed"), path ("a.qcow2"), 512);
  if (refcount_table_offset (path ("a.qcow2")) == rt0)
    die ("the refcount table never moved: the test lost its point");

  /* B: qcow2 over qcow2. */
  create_qcow2 (path ("b-base.qcow2"), SIZE, NULL, 0, -1, NULL, 0);
  make_base (path ("b-base.qcow2"));
  create_qcow2 (path ("b.qcow2"), SIZE, "b-base.qcow2", 4096, 0, "1.1", 16);
  run_chain (path ("b-base.qcow2"), path ("b.qcow2"), 4096);

  test_cleanup ();
  printf ("qcow2 eviction: ok\n");
  return 0;
}
