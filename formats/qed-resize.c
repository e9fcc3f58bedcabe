/* SPDX-License-Identifier: BSD-3-Clause */
/* QED resize.  The L1 table has a fixed size (table_size clusters), so
 * the largest size a QED image can take is fixed at create:
 * entries^2 * cluster_size (qed_max_image_size); a resize changes
 * image_size in the header and nothing else.  The header is one 64-byte
 * write inside the first sector: a crash leaves the old size or the new.
 *
 * Growing over a longer backing image writes the new part as zero
 * clusters first (resize.c says why), with NEED_CHECK set as for any
 * allocation.  qemu refuses this case ("Block driver does not support
 * requested flags"); QED has zero clusters, so we need not.
 *
 * Shrinking: qemu refuses it for QED.  We allow it when the image
 * allocates no cluster past the new end, so that nothing is lost and no
 * table entry points past the size (which qemu's check would not mind,
 * but a later grow would bring back).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>

#include "cleanup.h"
#include "qed.h"
#include "rounding.h"

/* Fails if the image allocates a cluster in [from, to). */
static int
check_nothing_past (struct qed *q, uint64_t from, uint64_t to)
{
  struct drv_status st;
  uint64_t off;

  for (off = from; off < to; off += st.length) {
    st = (struct drv_status) { 0 };
    if (cow_block_status (q->img, off, to - off, &st) == -1)
      return -1;
    if (st.kind != DRV_UNALLOCATED)
      return error_file (q->img, ENOTSUP, "cannot shrink: the image "
                         "allocates the cluster at guest offset %" PRIu64
                         ", past the new end", off);
  }
  return 0;
}

static int
write_header (void *fmt)
{
  return qed_write_header (fmt);
}

/* Writes the image size into the header (and syncs). */
static int
write_size (void *fmt, uint64_t size)
{
  struct qed *q = fmt;

  return cow_set_header_field (&q->cow, &q->h.image_size, size,
                               write_header);
}

int
qed_resize (struct image *img, uint64_t size, enum image_prealloc prealloc,
            bool zero_new)
{
  struct qed *q = img->priv;
  uint64_t old = img->size;

  if (prealloc != IMAGE_PREALLOC_OFF)
    return error_file (img, ENOTSUP, "resize of a QED image takes no "
                       "preallocation");
  if (size % 512 != 0 ||
      size > qed_max_image_size (q->h.cluster_size, q->h.table_size))
    return error_file (img, EINVAL, "invalid image size %" PRIu64 ": a "
                       "multiple of 512 up to %" PRIu64 " (cluster_size * "
                       "table entries^2) is needed", size,
                       qed_max_image_size (q->h.cluster_size,
                                           q->h.table_size));
  if (size < old &&
      check_nothing_past (q, ROUND_UP (size, q->cluster_size), old) == -1)
    return -1;
  return resize_set_size (img, size, zero_new, write_size, q);
}
