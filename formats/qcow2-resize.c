/* SPDX-License-Identifier: BSD-3-Clause */
/* qcow2 resize.
 *
 * Growing.  The L1 table must address the new size.  When it is too
 * small, a new one is written at the end of the file and the header is
 * switched to it, in this order (a crash at any point leaves an image
 * that opens with the old size or the new one):
 *
 *   1. new L1 table (old entries + zeros) in fresh clusters, counted in
 *      the refcount blocks, all synced;
 *   2. header: l1_size and l1_table_offset in one write inside the first
 *      sector, synced (the size is still the old one: a longer L1 table
 *      than the size needs is valid);
 *   3. the old table's clusters lose their reference (qcow2_writeback
 *      lowers the count once step 2 is durable).
 *
 * A crash after 1 and before 3 leaves clusters counted that nothing
 * references: leaks, which the dirty bit (set before step 1) has the
 * next read-write open repair.  Then, over a longer backing image, the
 * new part becomes zero clusters (resize.c says why), durable, and last
 * the size field (8 bytes at offset 24) is written and synced.
 *
 * Shrinking (qemu-img resize --shrink): the size is written first, so
 * that everything past it is unreachable, then the clusters past the new
 * end are dropped: an L2 table wholly past it goes with its clusters,
 * the tail of a table that straddles it is emptied (a table shared with
 * a snapshot is first copied, as any write would), and the end of the
 * file that is then free is cut off.  The l1_size stays, as qemu leaves
 * it.  A crash in between leaves the new size and at most leaks.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "byte-swapping.h"
#include "cleanup.h"
#include "qcow2.h"
#include "rounding.h"

/* Step 1: the new table, written and durable with its counts.  Called
 * with writeback_lock held. */
static int
write_new_l1 (struct qcow2 *q, uint64_t entries, struct mc_table *nt)
{
  uint64_t bytes = entries * 8;
  int64_t off;

  pthread_mutex_lock (&q->cow.lock);
  off = qcow2_reserve_clusters (q, DIV_ROUND_UP (bytes, q->cluster_size));
  if (off != -1 && mc_table_init (nt, (uint64_t) off, bytes) == -1)
    off = error_file (q->img, ENOMEM, "out of memory for the L1 table");
  if (off != -1)
    memcpy (nt->data, q->cow.l1.data, q->cow.l1.bytes);
  pthread_mutex_unlock (&q->cow.lock);
  if (off == -1)
    return -1;
  if (source_pwrite (q->img->src, nt->data, bytes, (uint64_t) off) == -1)
    return error_syscall (q->img, "writing the new L1 table");
  if ((!q->lazy && qcow2_write_refblocks (q) == -1) ||
      cow_fdatasync (&q->cow) == -1)
    return -1;
  return 0;
}

/* Steps 2 and 3.  Called with writeback_lock held. */
static int
switch_l1 (struct qcow2 *q, uint64_t entries, struct mc_table *nt)
{
  struct mc_table old;
  int r;

  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->header_lock);
    struct qcow2_header saved = q->h;
    q->h.l1_size = (uint32_t) entries;
    q->h.l1_table_offset = nt->offset;
    r = qcow2_write_header_fields (q, 36, 12);
    if (r == -1)
      q->h = saved;
  }
  if (r == -1)
    return -1;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);
  old = q->cow.l1;
  q->cow.l1 = *nt;
  *nt = (struct mc_table) { 0 };
  r = old.bytes ? qcow2_drop_ref (q, old.offset, old.bytes, true) : 0;
  mc_table_release (&old);
  return r;
}

static int
grow_l1 (struct qcow2 *q, uint64_t entries)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.writeback_lock);
  struct mc_table nt = { 0 };
  int r;

  if (entries * 8 > QCOW2_MAX_L1_BYTES)
    return error_file (q->img, EFBIG, "the L1 table would need %" PRIu64
                       " entries (at most %llu): the size is too large "
                       "for cluster_size %" PRIu64, entries,
                       QCOW2_MAX_L1_BYTES / 8, q->cluster_size);
  r = write_new_l1 (q, entries, &nt);
  crash_test_pause ();
  if (r == 0)
    r = switch_l1 (q, entries, &nt);
  mc_table_release (&nt);
  if (r == 0)
    r = qcow2_writeback_wbl (q, true);
  return r;
}

/* The size field is the 8 bytes at 24. */
static int
write_size_field (void *fmt)
{
  return qcow2_write_header_fields (fmt, 24, 8);
}

/* Writes the size field (and syncs). */
static int
write_size (void *fmt, uint64_t size)
{
  struct qcow2 *q = fmt;

  return cow_set_header_field (&q->cow, &q->h.size, size, write_size_field);
}

static int
grow (struct qcow2 *q, uint64_t size, bool zero_new)
{
  struct image *img = q->img;
  uint64_t need = qcow2_l1_entries_for (size, q->cluster_bits, q->l2_bits);

  if (zero_new && q->h.version < 3)
    return error_file (img, ENOTSUP, "cannot zero the new part, which "
                       "would otherwise read the longer backing file: "
                       "compat=0.10 images have no zero clusters");
  if (need > q->h.l1_size &&
      (qcow2_writeback (q, true) == -1 || qcow2_set_dirty (q, true) == -1 ||
       grow_l1 (q, need) == -1))
    return -1;
  return resize_set_size (img, size, zero_new, write_size, q);
}

/* Empties entries [j0, end) of the (private) L2 table of slot i.  Called
 * with q->cow.lock held. */
static int
drop_tail (struct qcow2 *q, uint64_t e, uint64_t j0)
{
  struct mc_entry *l2;
  uint64_t j;

  if (cow_get_l2 (&q->cow, e & QCOW2_OFFSET_MASK, &l2) == -1)
    return -1;
  for (j = j0; j < q->l2_entries; j++) {
    uint64_t v = qcow2_l2_get (q, l2, j);
    if (v == 0 && qcow2_l2_bitmap (q, l2, j) == 0)
      continue;
    if (qcow2_drop_entry (q, v, true) == -1)
      return -1;
    qcow2_l2_set (q, l2, j, 0);
    if (q->extended_l2) {
      memset (l2->t.data + j * 16 + 8, 0, 8);
      mc_table_mark (&l2->t, j * 16 + 8, 8);
    }
  }
  return 0;
}

/* Drops the clusters from guest cluster first on in L1 slot i. */
static int
drop_slot (struct qcow2 *q, uint64_t i, uint64_t first)
{
  uint64_t start = i << q->l2_bits, j0 = first > start ? first - start : 0;
  uint64_t e;

  pthread_mutex_lock (&q->cow.lock);
  e = cow_l1_get (&q->cow, i);
  pthread_mutex_unlock (&q->cow.lock);
  if ((e & QCOW2_OFFSET_MASK) == 0 ||
      qcow2_l1_entry_error (q, e, q->cow.file_end) != NULL)
    return 0;                   /* nothing there, or nothing to trust */
  if (j0 && !(e & QCOW2_COPIED) && qcow2_cow_l2 (q, i) == -1)
    return -1;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.writeback_lock);
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);
  e = cow_l1_get (&q->cow, i);
  if (j0)
    return drop_tail (q, e, j0);
  if (qcow2_drop_l2_table (q, e & QCOW2_OFFSET_MASK) == -1)
    return -1;
  cow_l1_set (&q->cow, i, 0);
  return cow_write_table_pages (&q->cow, &q->cow.l1);
}

static int
shrink (struct qcow2 *q, uint64_t size)
{
  struct image *img = q->img;
  uint64_t first = DIV_ROUND_UP (size, q->cluster_size), i;

  if (qcow2_writeback (q, true) == -1 || qcow2_set_dirty (q, true) == -1 ||
      write_size (q, size) == -1)
    return -1;
  img->size = size;
  crash_test_pause ();
  for (i = cow_l1_index (&q->cow, first); i < q->h.l1_size; i++)
    if (drop_slot (q, i, first) == -1)
      return -1;
  /* Twice: the second applies the references the first dropped, durably
   * (as a clean close does), before the free end of the file is cut. */
  if (qcow2_writeback (q, true) == -1 || qcow2_writeback (q, true) == -1)
    return -1;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.writeback_lock);
  return qcow2_truncate_free_tail (q);
}

int
qcow2_resize (struct image *img, uint64_t size, enum image_prealloc prealloc,
              bool zero_new)
{
  struct qcow2 *q = img->priv;

  if (prealloc != IMAGE_PREALLOC_OFF)
    return error_file (img, ENOTSUP, "resize of a qcow2 image takes no "
                       "preallocation here (cowbd-img create can "
                       "preallocate)");
  if (size % 512 != 0)
    return error_file (img, EINVAL, "the new size must be a multiple of "
                       "512, not %" PRIu64, size);
  if (size < img->size)
    return shrink (q, size);
  return grow (q, size, zero_new);
}
