/* SPDX-License-Identifier: BSD-3-Clause */
/* qcow2 amend: lazy refcounts switched on or off in an existing image.
 *
 * On: only the compatible feature bit changes (one header write); from
 * then on refcount blocks are written at flush time only and the dirty
 * bit covers them.  Off: every refcount block is written back and
 * synced first, so that the counts on disk are right before the header
 * stops saying they may not be.  Version 2 images have no feature bits:
 * lazy refcounts cannot be turned on there (qemu refuses it too).
 */
#include <config.h>

#include <errno.h>

#include "cleanup.h"
#include "qcow2.h"

static int
write_compat_bits (struct qcow2 *q, uint64_t bits)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->header_lock);
  uint64_t old = q->h.compatible_features;

  q->h.compatible_features = bits;
  if (qcow2_write_header_fields (q, 80, 8) == -1) {
    q->h.compatible_features = old;
    return -1;
  }
  return 0;
}

int
qcow2_set_lazy_refcounts (struct image *img, bool on)
{
  struct qcow2 *q = img->priv;
  uint64_t bits = q->h.compatible_features;

  if (q->h.version < 3)
    return on ? error_file (img, ENOTSUP, "lazy refcounts need compat=1.1 "
                            "(this image is compat=0.10)") : 0;
  if (on == !!(bits & QCOW2_COMPAT_LAZY_REFCOUNTS))
    return 0;
  if (on) {
    if (write_compat_bits (q, bits | QCOW2_COMPAT_LAZY_REFCOUNTS) == -1)
      return -1;
    q->lazy = true;
    return 0;
  }
  /* Stop deferring first, then make every count durable, then say so. */
  q->lazy = false;
  if (qcow2_writeback (q, true) == -1 ||
      write_compat_bits (q, bits & ~QCOW2_COMPAT_LAZY_REFCOUNTS) == -1) {
    q->lazy = true;
    return -1;
  }
  return 0;
}
