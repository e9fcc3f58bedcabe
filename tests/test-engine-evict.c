/* SPDX-License-Identifier: BSD-3-Clause */
/* A metadata cache much smaller than the working set: random writes,
 * zeroes and reads across 16 L2 tables with room for 4 in the cache, so
 * that dirty tables are written back and evicted all the time.  The
 * overlay's backing file is itself a QED image with data (a qed over qed
 * chain).  Everything is checked against a model, after close and
 * reopen, through qemu-img compare, and with qemu-img check.
 */
#include <config.h>

#include "engine-test.h"

#define CS 4096ULL
#define SIZE (64ULL << 20)        /* 4 KiB clusters, 2-cluster tables: 16
                                     L2 tables of 4 MiB each */
#define OPS 3000

static uint8_t model[SIZE];

static void
random_ops (struct image *img)
{
  static uint8_t buf[3 * CS];
  unsigned i;

  for (i = 0; i < OPS; i++) {
    uint64_t len = 1 + rnd_below (sizeof buf);
    uint64_t off = rnd_below (SIZE - len);
    unsigned kind = (unsigned) rnd_below (10);

    if (kind < 6) {
      fill_pattern (buf, len, off, 100 + i);
      CHECK (image_pwrite (img, buf, len, off, 0));
      memcpy (model + off, buf, len);
    }
    else if (kind < 7) {
      CHECK (image_zero (img, len, off, 0));
      memset (model + off, 0, len);
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

int
main (int argc, char *argv[])
{
  struct image *img;
  FILE *fp;
  uint64_t off;

  test_init (argv[0]);
  rng_seed ();

  /* The base: data every 3 MiB, so some L2 ranges of the overlay read
   * through to it and some do not. */
  create_image (path ("base.qed"), "qed", SIZE, NULL, CS, 2);
  img = open_image (path ("base.qed"), 0, 0);
  for (off = 0; off < SIZE; off += 3 << 20) {
    fill_pattern (model + off, 1 << 20, off, 1);
    CHECK (image_pwrite (img, model + off, 1 << 20, off, 0));
  }
  CHECK (image_close (img));

  create_image (path ("ov.qed"), "qed", SIZE, "base.qed", CS, 2);
  img = open_image (path ("ov.qed"), 0, 1);  /* the smallest cache */
  random_ops (img);
  verify_image (img, model, SIZE, "after random ops");
  CHECK (image_close (img));

  img = open_image (path ("ov.qed"), 0, 1);
  verify_image (img, model, SIZE, "after reopen");
  random_ops (img);                     /* again, on a used image */
  CHECK (image_close (img));

  qemu_img_check_clean (path ("ov.qed"));
  qemu_img_check_clean (path ("base.qed"));
  fp = fopen (path ("model.raw"), "w");
  if (fp == NULL || fwrite (model, 1, SIZE, fp) != SIZE || fclose (fp) != 0)
    die ("writing model.raw");
  if (run ("qemu-img compare -q -F raw '%s' '%s'", path ("ov.qed"),
           path ("model.raw")) != 0)
    die ("qemu-img compare: the overlay differs from the model");

  test_cleanup ();
  printf ("engine eviction: ok\n");
  return 0;
}
