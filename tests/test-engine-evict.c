/* SPDX-License-Identifier: BSD-3-Clause */
/* A metadata cache much smaller than the working set, built once per
 * cluster format (test-engine-evict-qed, -qcow2): random writes, zeroes,
 * trims and reads with the smallest cache (room for 4 L2 tables, and for
 * qcow2 4 refcount blocks), so that dirty tables and blocks are written
 * back and evicted all the time, across chains whose backing image has
 * data of its own:
 *
 *   QED: QED (4 KiB clusters, 2-cluster tables: 16 L2 tables of 4 MiB)
 *        over a QED image;
 *   qcow2 A: qcow2 (512-byte clusters, 64-bit refcounts, lazy refcounts)
 *        over a QED image: a refcount block covers only 32 KiB of file
 *        and the refcount table only 2 MiB per cluster, so new blocks are
 *        appended all the time and the table itself moves to the end of
 *        the file several times (checked);
 *   qcow2 B: qcow2 (4 KiB clusters, 16-bit refcounts, no lazy refcounts)
 *        over a qcow2 image.
 *
 * Everything is checked against a model, after close and reopen, through
 * qemu-img compare, and with qemu-img check.
 */
#include <config.h>

#include <fcntl.h>

#include "engine-test.h"
#include "byte-swapping.h"

#define MAX_SIZE (64ULL << 20)
#define OPS 3000

struct chain {
  struct fmt_case ov;           /* the overlay, in the format under test */
  const char *base_format;      /* its backing image, with data */
  uint32_t base_cs;
  uint64_t size;
  bool table_moves;             /* qcow2: the refcount table must move */
};

static const struct chain chains[] = {
  { { .format = "qed", .cs = 4096, .qed_tables = 2, .lazy = -1 },
    "qed", 4096, 64ULL << 20, false },
  { { .format = "qcow2", .cs = 512, .lazy = 1, .compat = "1.1",
      .refcount_bits = 64 }, "qed", 4096, 32ULL << 20, true },
  { { .format = "qcow2", .cs = 4096, .lazy = 0, .compat = "1.1",
      .refcount_bits = 16 }, "qcow2", 0, 32ULL << 20, false },
};

static uint8_t model[MAX_SIZE];
static uint64_t size;

/* Trim: each byte stays or reads zero; the model follows. */
static void
trim_op (struct image *img, uint8_t *buf, uint64_t len, uint64_t off,
         unsigned i)
{
  uint64_t j;

  CHECK (image_trim (img, len, off, 0));
  CHECK (image_pread (img, buf, len, off));
  for (j = 0; j < len; j++)
    if (buf[j] && buf[j] != model[off + j])
      die ("op %u: trim changed byte %" PRIu64, i, off + j);
  memcpy (model + off, buf, len);
}

static void
random_ops (struct image *img, uint64_t cs)
{
  static uint8_t buf[3 * 4096];
  unsigned i;

  for (i = 0; i < OPS; i++) {
    uint64_t len = 1 + rnd_below (MIN (sizeof buf, 3 * cs));
    uint64_t off = rnd_below (size - len);
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
    else if (kind < 14)
      trim_op (img, buf, len, off, i);
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
make_base (const char *file, const struct chain *ch)
{
  struct image *img;
  uint64_t off;

  create_image (file, ch->base_format, size, NULL, ch->base_cs,
                strcmp (ch->base_format, "qed") == 0 ? 2 : 0);
  img = open_image (file, 0, 0);
  memset (model, 0, size);
  for (off = 0; off < size; off += 3 << 20) {
    fill_pattern (model + off, 1 << 20, off, 1);
    CHECK (image_pwrite (img, model + off, 1 << 20, off, 0));
  }
  CHECK (image_close (img));
}

static void
run_chain (const char *base, const char *ov, uint64_t cs)
{
  struct image *img;

  img = open_fmt (ov, 0, 1);    /* the smallest cache */
  random_ops (img, cs);
  verify_image (img, model, size, "after random ops");
  CHECK (image_close (img));

  img = open_fmt (ov, 0, 1);
  verify_image (img, model, size, "after reopen");
  random_ops (img, cs);                 /* again, on a used image */
  CHECK (image_close (img));

  qemu_img_check_clean (ov);
  qemu_img_check_clean (base);
  write_file (path ("model.raw"), model, size);
  if (run ("qemu-img compare -q -F raw '%s' '%s'", ov,
           path ("model.raw")) != 0)
    die ("qemu-img compare: %s differs from the model", ov);
}

static void
test_chain (const struct chain *ch, unsigned n)
{
  char base[64], ov[64];
  uint64_t rt0 = 0;

  snprintf (base, sizeof base, "base%u.%s", n, ch->base_format);
  snprintf (ov, sizeof ov, "ov%u.%s", n, test_format);
  size = ch->size;
  assert (size <= MAX_SIZE);
  make_base (path (base), ch);
  create_fmt (path (ov), size, base, &ch->ov);
  if (ch->table_moves)
    rt0 = refcount_table_offset (path (ov));
  run_chain (path (base), path (ov), fmt_cluster_size (&ch->ov));
  if (ch->table_moves && refcount_table_offset (path (ov)) == rt0)
    die ("the refcount table never moved: the test lost its point");
}

int
main (int argc, char *argv[])
{
  unsigned i;

  test_init (argv[0]);
  rng_seed ();
  for (i = 0; i < sizeof chains / sizeof chains[0]; i++)
    if (fmt_is (chains[i].ov.format))
      test_chain (&chains[i], i);
  return test_done ("eviction");
}
