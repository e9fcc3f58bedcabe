/* SPDX-License-Identifier: BSD-3-Clause */
/* cowbd-img compare [-q] [-p] [-s] [-f FMT] [-F FMT] FILE1 FILE2
 *
 * Compares what two images read (each through its backing chain), as
 * qemu-img compare does, with its messages and exit status:
 *
 *   0  "Images are identical."
 *   1  "Content mismatch at offset N!" (N: the first differing 512-byte
 *      sector), or in strict mode (-s) a size or allocation mismatch
 *   2  an image could not be opened, or a usage error (qemu-img exits 1
 *      on a usage error, which a script cannot tell from "different")
 *   3  the allocation status could not be read   4  a read failed
 *
 * Both images are walked by their extents: a range both call zero is not
 * read at all; a range one calls zero is read from the other only, which
 * must read zeros; other ranges are read from both and compared.  Images
 * of different sizes are the same when the larger one's extra part reads
 * as zeros ("Warning: Image size mismatch!" is printed first).
 */
#include <config.h>

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "img.h"
#include "iszero.h"
#include "minmax.h"

#define BUF_SIZE (2u << 20)
#define SECTOR 512u

enum {
  CMP_SAME = 0, CMP_DIFFERENT = 1, CMP_OPEN_ERROR = 2,
  CMP_STATUS_ERROR = 3, CMP_READ_ERROR = 4,
};

struct side {
  const char *name;
  struct image *img;
  uint64_t size;
  char *buf;
};

struct compare {
  struct side a, b;
  bool strict, quiet;
  struct progress *progress;
  uint64_t total;               /* the larger size */
};

static int
side_extent (struct side *s, uint64_t offset, struct image_extent *e)
{
  if (extent_at (s->img, offset, s->size, e) == -1) {
    error_image ();
    return -1;
  }
  return 0;
}

static int
read_side (struct side *s, uint64_t offset, size_t n)
{
  if (image_pread (s->img, s->buf, n, offset) == -1) {
    error_image ();
    return -1;
  }
  return 0;
}

static void
mismatch (struct compare *cmp, uint64_t offset)
{
  progress_end (cmp->progress);
  if (!cmp->quiet)
    printf ("Content mismatch at offset %" PRIu64 "!\n", offset);
}

/* Index of the first sector of buf that is not all zeros, or n. */
static size_t
first_nonzero (const char *buf, size_t n)
{
  size_t i;

  for (i = 0; i < n; i += SECTOR)
    if (!is_zero (buf + i, MIN ((size_t) SECTOR, n - i)))
      return i;
  return n;
}

/* Index of the first sector where a and b differ, or n. */
static size_t
first_difference (const char *a, const char *b, size_t n)
{
  size_t i;

  for (i = 0; i < n; i += SECTOR)
    if (memcmp (a + i, b + i, MIN ((size_t) SECTOR, n - i)) != 0)
      return i;
  return n;
}

/* The range [offset, offset + n) of s must read zeros. */
static int
expect_zeros (struct compare *cmp, struct side *s, uint64_t offset,
              size_t n)
{
  size_t i;

  if (read_side (s, offset, n) == -1)
    return CMP_READ_ERROR;
  i = first_nonzero (s->buf, n);
  if (i < n) {
    mismatch (cmp, offset + i);
    return CMP_DIFFERENT;
  }
  return CMP_SAME;
}

static int
compare_data (struct compare *cmp, uint64_t offset, size_t n)
{
  size_t i;

  if (read_side (&cmp->a, offset, n) == -1 ||
      read_side (&cmp->b, offset, n) == -1)
    return CMP_READ_ERROR;
  i = first_difference (cmp->a.buf, cmp->b.buf, n);
  if (i < n) {
    mismatch (cmp, offset + i);
    return CMP_DIFFERENT;
  }
  return CMP_SAME;
}

/* Compares [offset, offset + *n) given both images' extent flags there;
 * *n may shrink to what one buffer holds. */
static int
compare_range (struct compare *cmp, unsigned fa, unsigned fb,
               uint64_t offset, uint64_t *n)
{
  bool za = fa & IMAGE_EXTENT_ZERO, zb = fb & IMAGE_EXTENT_ZERO;

  if (za && zb)
    return CMP_SAME;
  *n = MIN (*n, (uint64_t) BUF_SIZE);
  if (za)
    return expect_zeros (cmp, &cmp->b, offset, *n);
  if (zb)
    return expect_zeros (cmp, &cmp->a, offset, *n);
  return compare_data (cmp, offset, *n);
}

/* What -s compares, as qemu-img compares block status: the flags,
 * whether the range has a host offset (a hole of a raw file has one, a
 * zero cluster has none), and whether the run reaches the end of its
 * image (qemu's BDRV_BLOCK_EOF: an empty image against one with a zero
 * cluster in the middle differs at offset 0, not at the cluster). */
static unsigned
strict_status (const struct image_extent *e, uint64_t size)
{
  return (e->flags & (IMAGE_EXTENT_DATA | IMAGE_EXTENT_ZERO |
                      IMAGE_EXTENT_PRESENT)) |
    (e->host_offset >= 0 ? 0x100u : 0) |
    (e->offset + e->length >= size ? 0x200u : 0);
}

/* Compares the common part [0, min size).  Returns a CMP_* status. */
static int
compare_common (struct compare *cmp)
{
  uint64_t offset = 0, end = MIN (cmp->a.size, cmp->b.size);

  while (offset < end) {
    struct image_extent ea, eb;
    uint64_t n;
    int r;

    if (side_extent (&cmp->a, offset, &ea) == -1 ||
        side_extent (&cmp->b, offset, &eb) == -1)
      return CMP_STATUS_ERROR;
    n = MIN (ea.length, eb.length);
    n = MIN (n, end - offset);
    if (cmp->strict && strict_status (&ea, cmp->a.size) !=
        strict_status (&eb, cmp->b.size)) {
      progress_end (cmp->progress);
      if (!cmp->quiet)
        printf ("Strict mode: Offset %" PRIu64 " block status mismatch!\n",
                offset);
      return CMP_DIFFERENT;
    }
    r = compare_range (cmp, ea.flags, eb.flags, offset, &n);
    if (r != CMP_SAME)
      return r;
    offset += n;
    progress_update (cmp->progress, offset, cmp->total);
  }
  return CMP_SAME;
}

/* The part of the larger image past the smaller one must read zeros. */
static int
compare_rest (struct compare *cmp)
{
  struct side *s = cmp->a.size > cmp->b.size ? &cmp->a : &cmp->b;
  uint64_t offset = MIN (cmp->a.size, cmp->b.size);

  if (!cmp->quiet)
    printf ("Warning: Image size mismatch!\n");
  while (offset < s->size) {
    struct image_extent e;
    uint64_t n;
    int r;

    if (side_extent (s, offset, &e) == -1)
      return CMP_STATUS_ERROR;
    n = e.length;
    if (!(e.flags & IMAGE_EXTENT_ZERO)) {
      n = MIN (n, BUF_SIZE);
      r = expect_zeros (cmp, s, offset, n);
      if (r != CMP_SAME)
        return r;
    }
    offset += n;
    progress_update (cmp->progress, offset, cmp->total);
  }
  return CMP_SAME;
}

static int
compare (struct compare *cmp)
{
  int r;

  if (cmp->strict && cmp->a.size != cmp->b.size) {
    if (!cmp->quiet)
      printf ("Strict mode: Image size mismatch!\n");
    return CMP_DIFFERENT;
  }
  r = compare_common (cmp);
  if (r == CMP_SAME && cmp->a.size != cmp->b.size)
    r = compare_rest (cmp);
  progress_end (cmp->progress);
  if (r == CMP_SAME && !cmp->quiet)
    printf ("Images are identical.\n");
  return r;
}

static int
open_side (struct side *s, const char *name, const char *format,
           unsigned share)
{
  s->name = name;
  s->img = open_image (name, format, IMAGE_OPEN_READONLY | share);
  if (s->img == NULL)
    return -1;
  s->size = image_size (s->img);
  s->buf = malloc (BUF_SIZE);
  if (s->buf == NULL) {
    error_msg ("out of memory");
    return -1;
  }
  return 0;
}

static void
close_side (struct side *s)
{
  if (s->img)
    image_close (s->img);
  free (s->buf);
}

int
cmd_compare (int argc, char **argv)
{
  static const struct option long_opts[] = {
    { "help", no_argument, NULL, OPT_HELP },
    { "force-share", no_argument, NULL, 'U' },
    { NULL },
  };
  struct compare cmp = { .strict = false };
  const char *fmt1 = NULL, *fmt2 = NULL;
  bool show_progress = false;
  unsigned share = 0;
  int c, status = CMP_OPEN_ERROR;

  while ((c = getopt_long (argc, argv, "qpsf:F:U", long_opts, NULL)) != -1) {
    switch (c) {
    case OPT_HELP: usage_command (stdout, "compare"); return 0;
    case 'U': share = IMAGE_OPEN_FORCE_SHARE; break;
    case 'q': cmp.quiet = true; break;
    case 'p': show_progress = true; break;
    case 's': cmp.strict = true; break;
    case 'f': fmt1 = optarg; break;
    case 'F': fmt2 = optarg; break;
    default: return usage_hint ("compare", CMP_OPEN_ERROR);
    }
  }
  if (argc - optind != 2)
    return usage_error ("compare", CMP_OPEN_ERROR,
                        "expecting two image file names");

  if (open_side (&cmp.a, argv[optind], fmt1, share) == 0 &&
      open_side (&cmp.b, argv[optind + 1], fmt2, share) == 0) {
    cmp.total = MAX (cmp.a.size, cmp.b.size);
    cmp.progress = progress_new (show_progress && !cmp.quiet);
    status = compare (&cmp);
    progress_free (cmp.progress);
  }
  close_side (&cmp.a);
  close_side (&cmp.b);
  return status;
}
