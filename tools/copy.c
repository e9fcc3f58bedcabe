/* SPDX-License-Identifier: BSD-3-Clause */
/* Helpers for the commands that move data between images (convert,
 * commit, rebase): one extent at a time, and writing a buffer while
 * leaving out or zeroing its all-zero blocks.
 */
#include <config.h>

#include "img.h"
#include "iszero.h"
#include "minmax.h"

static int
store_extent (void *opaque, const struct image_extent *e)
{
  *(struct image_extent *) opaque = *e;
  return 0;
}

int
extent_at (struct image *img, uint64_t offset, uint64_t limit,
           struct image_extent *e)
{
  return image_extents (img, limit - offset, offset, IMAGE_EXTENTS_ONE,
                        store_extent, e);
}

int
write_runs (struct image *dst, const char *buf, size_t count,
            uint64_t offset, bool fill_zeros)
{
  size_t i = 0;

  while (i < count) {
    size_t n = MIN ((size_t) ZERO_BLOCK, count - i), start = i;
    bool zero = is_zero (buf + i, n);
    int r = 0;

    for (i += n; i < count; i += n) {
      n = MIN ((size_t) ZERO_BLOCK, count - i);
      if (is_zero (buf + i, n) != zero)
        break;
    }
    if (!zero)
      r = image_pwrite (dst, buf + start, i - start, offset + start, 0);
    else if (fill_zeros)
      r = image_zero (dst, i - start, offset + start, IMAGE_MAY_TRIM);
    if (r == -1)
      return -1;
  }
  return 0;
}
