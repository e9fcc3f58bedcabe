/* SPDX-License-Identifier: BSD-3-Clause */
/* cowbd-img convert -c: the target's clusters written compressed.
 *
 * Compression works on whole clusters of the target, so with -c the
 * chunks convert hands out start and end on cluster boundaries
 * (compress_align): a zero range is skipped only in whole clusters, and
 * a cluster partly zero is data.  A worker then writes each cluster of
 * its chunk that is not all zeros with image_write_compressed, which
 * compresses in the calling thread: the workers compress in parallel,
 * and the engine serialises only the placing of the compressed bytes
 * (the last cluster of an image of odd size is padded by the engine).
 * Clusters that are all zeros are skipped, or with -n written as zeros.
 */
#include <config.h>

#include <inttypes.h>
#include <string.h>

#include "img.h"
#include "iszero.h"
#include "minmax.h"
#include "rounding.h"

int
compress_cluster_size (struct image *dst, uint64_t *cluster)
{
  struct image_info info;

  memset (&info, 0, sizeof info);
  image_get_info (dst, &info);
  if (strcmp (info.format, "qcow2") != 0 || info.cluster_size == 0) {
    error_msg ("%s: compression is not supported for this image format",
               image_name (dst));
    return -1;
  }
  *cluster = info.cluster_size;
  return 0;
}

void
compress_align (uint64_t cluster, uint64_t size, uint64_t offset,
                uint64_t *length, bool *zero)
{
  uint64_t end = offset + *length;

  if (*zero && end < size)
    end = ROUND_DOWN (end, cluster);
  if (end <= offset) {            /* zeros inside a cluster: data */
    *zero = false;
    end = offset + cluster;
  }
  if (!*zero)
    end = ROUND_UP (end, cluster);
  *length = MIN (end, size) - offset;
}

int
compress_chunk (struct image *dst, const char *buf, uint64_t offset,
                uint64_t length, uint64_t cluster, bool fill_zeros)
{
  uint64_t i;

  for (i = 0; i < length; i += cluster) {
    size_t n = (size_t) MIN (cluster, length - i);

    if (!is_zero (buf + i, n)) {
      if (image_write_compressed (dst, buf + i, n, offset + i) == -1)
        return -1;
    }
    else if (fill_zeros &&
             image_zero (dst, n, offset + i, IMAGE_MAY_TRIM) == -1)
      return -1;
  }
  return 0;
}
