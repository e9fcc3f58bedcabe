/* SPDX-License-Identifier: BSD-3-Clause */
/* QED tables: entry validation, L1 and L2 access, loading L2 tables into
 * the metadata cache, creating L2 tables, and writeback.
 *
 * Crash ordering (shared/DESIGN.md, rules 1-4) is kept here:
 *
 *  - qed_writeback copies the dirty L2 pages under the lock, then
 *    fdatasyncs the file (the data every copied entry points to was
 *    written before the entry was set, so it is now durable: rule 1),
 *    then writes the copies and fdatasyncs again (rule 4).  The first
 *    sync is left out when every new cluster below the copied entries
 *    read as zeros before and lies in a durable file length: data and
 *    entries then share the one sync (cow.c, "One sync or two").
 *  - A new L2 table is written out, zeroed, and made durable before the
 *    L1 entry naming it is written (rule 2).  Creating one first drains
 *    the allocations in flight and writes back every dirty table, so that
 *    no cluster below a table is ever left unreferenced by a crash: the
 *    repair after a crash then only has data clusters to move
 *    (qed-check.c), never tables.
 *  - The header's NEED_CHECK bit is durable before the first cluster is
 *    appended (qed_set_need_check, rule 3).
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byte-swapping.h"
#include "checked-overflow.h"
#include "cleanup.h"
#include "qed.h"
#include "rounding.h"

/* ---- entries --------------------------------------------------------- */

/* A table (L2) offset read from the L1 table: a multiple of the cluster
 * size, past the header, clear of the L1 table, and wholly inside the
 * file. */
bool
qed_table_offset_valid (struct qed *q, uint64_t offset, uint64_t file_size)
{
  uint64_t l1 = q->h.l1_table_offset;

  if (!IS_ALIGNED (offset, q->cluster_size) || offset < q->header_end)
    return false;
  if (RANGE_OUTSIDE (offset, q->table_bytes, file_size))
    return false;
  return offset + q->table_bytes <= l1 || offset >= l1 + q->table_bytes;
}

enum qed_entry_kind
qed_entry_kind (struct qed *q, uint64_t entry, uint64_t file_size)
{
  uint64_t l1 = q->h.l1_table_offset;

  if (entry == QED_UNALLOCATED)
    return QED_E_UNALLOC;
  if (entry == QED_ZERO_CLUSTER)
    return QED_E_ZERO;
  /* The low bits are reserved and must be zero, which the alignment test
   * covers; a cluster must not overlap the header or the L1 table. */
  if (!IS_ALIGNED (entry, q->cluster_size) || entry < q->header_end ||
      entry >= file_size)
    return QED_E_INVALID;
  if (entry >= l1 && entry < l1 + q->table_bytes)
    return QED_E_INVALID;
  return QED_E_DATA;
}

uint64_t
qed_l1_get (struct qed *q, uint64_t l1_index)
{
  return le64_load (q->l1.data + l1_index * 8);
}

void
qed_l1_set (struct qed *q, uint64_t l1_index, uint64_t value)
{
  le64_store (q->l1.data + l1_index * 8, value);
  mc_table_mark (&q->l1, l1_index * 8, 8);
}

uint64_t
qed_l2_get (struct mc_entry *l2, uint64_t l2_index)
{
  uint64_t w = mc_word (l2, l2_index * 8);      /* dense or compact */

  return le64_load (&w);
}

void
qed_l2_set (struct mc_entry *l2, uint64_t l2_index, uint64_t value)
{
  le64_store (l2->t.data + l2_index * 8, value);
  mc_table_mark (&l2->t, l2_index * 8, 8);
}

/* ---- loading --------------------------------------------------------- */

/* Finds the L2 table at l2_offset in the cache or reads it in.  Called
 * with q->lock held; the read happens under it. */
int
qed_get_l2 (struct qed *q, uint64_t l2_offset, struct mc_entry **ep)
{
  struct mc_entry *e = mc_find (q->l2_cache, l2_offset);

  if (e == NULL) {
    e = mc_insert (q->l2_cache, l2_offset);
    if (e == NULL)
      return error_file (q->img, ENOMEM, "out of memory for an L2 table");
    if (source_pread (q->img->src, e->t.data, q->table_bytes, l2_offset) == -1) {
      int r = error_file (q->img, errno,
                          "reading L2 table at 0x%" PRIx64 ": %s",
                          l2_offset, strerror (errno));
      mc_remove (q->l2_cache, e);
      return r;
    }
  }
  *ep = e;
  return 0;
}

/* ---- writeback ------------------------------------------------------- */

static int
write_fn (void *opaque, const void *buf, size_t len, uint64_t offset)
{
  struct qed *q = opaque;

  if (source_pwrite (q->img->src, buf, len, offset) == -1)
    return error_file (q->img, errno,
                       "writing metadata at 0x%" PRIx64 ": %s", offset,
                       strerror (errno));
  return 0;
}

static int
sync_file (struct qed *q)
{
  cow_assert_not_held (&q->lock);
  if (cow_sync (&q->cow) == -1)
    return error_syscall (q->img, "fdatasync");
  return 0;
}

/* The body of qed_writeback: called with writeback_lock held and q->lock
 * not held. */
static int
writeback_locked (struct qed *q)
{
  struct mc_snapshot *snap = mc_snapshot_new ();
  uint64_t lengths;
  bool ordered;
  int r = 0;

  if (snap == NULL)
    return error_file (q->img, ENOMEM, "out of memory");
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->lock);
    if (q->broken) {
      mc_snapshot_free (snap);
      return cow_broken_error (&q->cow);
    }
    if (mc_snapshot_cache (snap, q->l2_cache) == -1) {
      mc_snapshot_free (snap);
      return error_file (q->img, ENOMEM, "out of memory");
    }
    ordered = cow_flush_begin (&q->cow, &lengths);
  }

  /* Rule 1: the data the copied entries point to is durable before any of
   * them reaches the file - by a sync of its own, unless it may share the
   * one below (cow.c).  With nothing to write, this sync is the whole
   * flush. */
  if (ordered || mc_snapshot_empty (snap))
    r = sync_file (q);
  if (r == 0 && !mc_snapshot_empty (snap)) {
    r = mc_snapshot_write (snap, write_fn, q);
    if (r == 0)
      r = sync_file (q);
  }

  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->lock);
    cow_flush_end (&q->cow, lengths, ordered, r);
    if (r == -1) {
      /* Keep what we could not write; refuse further writes, as the file
       * and memory may now disagree.  NEED_CHECK stays set. */
      mc_snapshot_redirty (snap);
      q->broken = true;
      sticky_set (q->img);
    }
    mc_snapshot_unpin (snap);
    mc_shrink (q->l2_cache);
  }
  mc_snapshot_free (snap);
  return r;
}

int
qed_writeback (struct qed *q)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->writeback_lock);
  return writeback_locked (q);
}

/* ---- creating an L2 table -------------------------------------------- */

/* A new table, shaped as qcow2's (qcow2-table.c): reserved under q->lock,
 * made durable without it, then linked under it.  New allocations wait
 * (creating_table) while it is made. */

/* Drains the allocations in flight: every cluster already reserved lands
 * below the new table and is written back before the table exists.
 * Returns 1 if slot l1_index still needs a table, else 0 (someone else
 * made it; creating_table is clear again). */
static int
begin_table (struct qed *q, uint64_t l1_index)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->lock);

  q->creating_table = true;
  while (q->allocs)
    pthread_cond_wait (&q->cond, &q->lock);
  if (qed_l1_get (q, l1_index) == 0)
    return 1;
  q->creating_table = false;
  pthread_cond_broadcast (&q->cond);
  return 0;
}

/* Reserves table_bytes at the end of the file for the new table. */
static int
reserve_table (struct qed *q, uint64_t *offset)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->lock);

  uint64_t end = q->file_end;

  if (host_grow_file (q->img, &q->file_length, end + q->table_bytes,
                      q->cluster_size) == -1)
    return -1;
  q->file_end += q->table_bytes;
  *offset = end;
  /* Without memory the set misses it: a check lost, nothing else. */
  overlap_add (&q->cow.meta, end, q->table_bytes, "L2 table");
  return 0;
}

/* Rule 2: the table is durable before the L1 entry that names it.  Called
 * without q->lock: readers and writers of other tables go on. */
static int
table_durable (struct qed *q, uint64_t offset)
{
  CLEANUP_FREE uint8_t *zeros = calloc (1, q->table_bytes);

  if (zeros == NULL)
    return error_file (q->img, ENOMEM, "out of memory");
  cow_assert_not_held (&q->lock);
  if (source_pwrite (q->img->src, zeros, q->table_bytes, offset) == -1 ||
      cow_sync (&q->cow) == -1)
    return error_file (q->img, errno, "writing a new L2 table at 0x%"
                       PRIx64 ": %s", offset, strerror (errno));
  return 0;
}

/* Points L1 slot l1_index at the table (r == 0) and writes the L1 table
 * out; the next writeback's first sync makes it durable before any entry
 * of the table is written (cow_order_tables).  Ends the creation either
 * way. */
static int
link_table (struct qed *q, uint64_t l1_index, uint64_t offset, int r)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->lock);
  struct mc_snapshot *s = NULL;
  struct mc_entry *e;

  if (r == 0) {
    qed_l1_set (q, l1_index, offset);
    cow_order_tables (&q->cow);
    s = mc_snapshot_new ();
    if (s == NULL || mc_snapshot_add (s, &q->l1) == -1 ||
        mc_snapshot_write (s, write_fn, q) == -1) {
      if (s == NULL || errno == ENOMEM)
        error_file (q->img, ENOMEM, "out of memory");
      q->broken = true;
      sticky_set (q->img);
      r = -1;
    }
    mc_snapshot_free (s);
  }
  else if (offset != 0)
    q->leaked = true;           /* the reserved space */
  if (r == 0) {
    /* The table is known to be all zeros: cache it, clean. */
    e = mc_find (q->l2_cache, offset);
    if (e == NULL && (e = mc_insert (q->l2_cache, offset)) != NULL)
      memset (e->t.data, 0, q->table_bytes);
  }
  q->creating_table = false;
  pthread_cond_broadcast (&q->cond);
  return r;
}

/* Gives guest L1 slot l1_index a new, empty L2 table at the end of the
 * file.  Called without q->lock; the caller holds no allocation in
 * flight. */
int
qed_create_l2 (struct qed *q, uint64_t l1_index)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->writeback_lock);
  uint64_t offset = 0;
  int r;

  if (begin_table (q, l1_index) == 0)
    return 0;
  r = writeback_locked (q);
  if (r == 0)
    r = qed_set_need_check (q, true);
  if (r == 0)
    r = reserve_table (q, &offset);
  if (r == 0)
    r = table_durable (q, offset);
  return link_table (q, l1_index, offset, r);
}
