/* SPDX-License-Identifier: BSD-3-Clause */
/* qcow2 amend: lazy refcounts switched on or off in an existing image,
 * and the compat level (header version 2 or 3) changed.
 *
 * On: only the compatible feature bit changes (one header write); from
 * then on refcount blocks are written at flush time only and the dirty
 * bit covers them.  Off: every refcount block is written back and
 * synced first, so that the counts on disk are right before the header
 * stops saying they may not be.  Version 2 images have no feature bits:
 * lazy refcounts cannot be turned on there (qemu refuses it too).
 *
 * Compat: 1.1 -> 0.10 only where nothing needs version 3 (checked before
 * anything is written: refcount_bits 16, no incompatible feature but a
 * zlib-compatible compression type, no zero cluster in any table); lazy
 * refcounts are turned off first, everything is written back, then the
 * header cluster is rewritten in one write (72-byte header, no feature
 * table).  0.10 -> 1.1: the same rewrite with the version 3 fields.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byte-swapping.h"
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

static int
set_lazy_refcounts (struct image *img, bool on)
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

/* ---- compat (the header version) ---------------------------------------- */

/* What a downgrade finds in the tables. */
struct v3_use {
  bool zero;                    /* a zero cluster (bit 0) */
  bool compressed;              /* a compressed cluster */
};

static int
scan_l2 (struct qcow2 *q, uint64_t l2off, struct v3_use *u)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);
  struct mc_entry *l2;
  uint64_t j, v;
  const char *why;

  if (cow_get_l2 (&q->cow, l2off, &l2) == -1)
    return -1;
  for (j = 0; j < q->l2_entries; j++) {
    v = qcow2_l2_get (q, l2, j);
    switch (qcow2_entry_kind (q, v, q->cow.file_end, &why)) {
    case Q_COMPRESSED: u->compressed = true; break;
    case Q_ZERO: u->zero = true; break;
    default: break;
    }
  }
  return 0;
}

/* Scans the L2 tables of an L1 table (n big-endian entries). */
static int
scan_l1 (struct qcow2 *q, const uint8_t *l1, uint64_t n, struct v3_use *u)
{
  uint64_t i, e;

  for (i = 0; i < n; i++) {
    e = be64_load (l1 + i * 8);
    if ((e & QCOW2_OFFSET_MASK) &&
        qcow2_l1_entry_error (q, e, q->cow.file_end) == NULL &&
        scan_l2 (q, e & QCOW2_OFFSET_MASK, u) == -1)
      return -1;
  }
  return 0;
}

/* The active and every snapshot's tables scanned. */
static int
scan_all (struct qcow2 *q, struct v3_use *u)
{
  uint32_t i;

  if (scan_l1 (q, q->cow.l1.data, q->h.l1_size, u) == -1)
    return -1;
  for (i = 0; i < q->h.nb_snapshots; i++) {
    const struct qcow2_snapshot *sn = &q->snapshots[i];
    CLEANUP_FREE uint8_t *l1 = malloc (sn->l1_size ? sn->l1_size * 8 : 1);
    if (l1 == NULL)
      return error_file (q->img, ENOMEM, "out of memory");
    if (sn->l1_size && source_pread (q->img->src, l1, sn->l1_size * 8,
                                     sn->l1_table_offset) == -1)
      return error_syscall (q->img, "reading a snapshot's L1 table");
    if (scan_l1 (q, l1, sn->l1_size, u) == -1)
      return -1;
  }
  return 0;
}

/* Why a downgrade is refused (qemu-img amend's words where it refuses
 * too), before anything is written: 0 if it may go on. */
static int
downgrade_refused (struct qcow2 *q)
{
  uint64_t other = q->h.incompatible_features &
                   ~(QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_COMPRESSION);
  struct v3_use u = { false, false };

  if (q->h.refcount_order != 4)
    return error_file (q->img, ENOTSUP, "compat=0.10 requires "
                       "refcount_bits=16");
  if (other)
    return error_file (q->img, ENOTSUP, "Cannot downgrade an image with "
                       "incompatible features 0x%" PRIx64 " set", other);
  if (scan_all (q, &u) == -1)
    return -1;
  if (u.compressed && q->h.compression_type != QCOW2_COMPRESSION_ZLIB)
    return error_file (q->img, ENOTSUP, "Cannot downgrade an image with "
                       "zstd compression type and existing compressed "
                       "clusters");
  /* qemu-img writes zero clusters out as data; not done here. */
  if (u.zero)
    return error_file (q->img, ENOTSUP, "cannot downgrade to compat=0.10: "
                       "the image has zero clusters, which version 2 "
                       "cannot express (qemu-img amend writes them out)");
  return 0;
}

/* The whole header cluster rewritten for version: one write, synced.
 * Everything else is written back first: a version 2 header has no
 * dirty bit to cover what is not. */
static int
write_version (struct qcow2 *q, unsigned version)
{
  struct image *img = q->img;
  struct qcow2_header saved = q->h;
  const char *fmt = q->backing_format_stored ? img->backing_format : NULL;

  if (qcow2_writeback (q, true) == -1 || qcow2_writeback (q, true) == -1)
    return -1;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->header_lock);
  q->h.version = version;
  q->h.incompatible_features = q->h.compatible_features = 0;
  q->h.autoclear_features = 0;
  q->h.refcount_order = 4;
  q->h.compression_type = QCOW2_COMPRESSION_ZLIB;
  q->h.header_length = version >= 3 ? QCOW2_OUR_HEADER_BYTES
                                    : QCOW2_V2_HEADER_BYTES;
  /* Upgrading: what followed the version 2 header is not header. */
  memset (q->header_raw + QCOW2_V2_HEADER_BYTES, 0,
          QCOW2_OUR_HEADER_BYTES - QCOW2_V2_HEADER_BYTES);
  if (qcow2_write_header (q, img->backing_filename, fmt) == -1) {
    q->h = saved;
    return -1;
  }
  q->lazy = false;
  __atomic_store_n (&q->cow.marked, false, __ATOMIC_RELEASE);
  return 0;
}

/* Changes the compat level as qemu-img amend -o compat= does: "1.1"
 * (or "v3") upgrades a version 2 image; "0.10" (or "v2") downgrades a
 * version 3 image where no version 3 feature is in use (lazy refcounts
 * are turned off first, a zstd compression type without compressed
 * clusters becomes zlib).  A refusal (refcount_bits other than 16,
 * incompatible features, zstd-compressed clusters, zero clusters)
 * writes nothing; the header is rewritten in one write. */
static int
set_compat (struct image *img, const char *compat)
{
  struct qcow2 *q = img->priv;
  unsigned version;

  if (strcmp (compat, "0.10") == 0 || strcmp (compat, "v2") == 0)
    version = 2;
  else if (strcmp (compat, "1.1") == 0 || strcmp (compat, "v3") == 0)
    version = 3;
  else
    return error_file (img, EINVAL, "Unknown compatibility level %s",
                       compat);
  if (version == q->h.version)
    return 0;
  if (version < q->h.version) {
    if (downgrade_refused (q) == -1 ||
        set_lazy_refcounts (img, false) == -1)
      return -1;
  }
  return write_version (q, version);
}

static bool
is_v2 (const char *compat)
{
  return strcmp (compat, "0.10") == 0 || strcmp (compat, "v2") == 0;
}

/* compat first, checked whole before it writes (a refused downgrade
 * leaves the file as it was), then the size and backing file, then lazy
 * refcounts (not on a version 2 target, which has none), as qemu-img
 * amend goes. */
int
qcow2_amend (struct image *img, const struct image_create_opts *opts)
{
  const char *compat = create_opt_string (opts, "compat");
  const struct image_option_value *lazy = image_option_find (opts,
                                                     "lazy_refcounts");
  bool v2 = compat && is_v2 (compat);

  if (v2 && lazy && lazy->number)
    return error_set (EINVAL, "Lazy refcounts only supported with "
                      "compatibility level 1.1 and above (use compat=1.1 "
                      "or greater)");
  if ((compat && set_compat (img, compat) == -1) ||
      amend_common (img, opts) == -1)
    return -1;
  if (lazy && !v2)
    return set_lazy_refcounts (img, lazy->number != 0);
  return 0;
}
