/* SPDX-License-Identifier: BSD-3-Clause */
/* QED tables: entry validation, L1 and L2 access, loading L2 tables into
 * the metadata cache, creating L2 tables, and writeback.
 *
 * Crash ordering (shared/DESIGN.md, rules 1-4) is kept here:
 *
 *  - qed_writeback (cow_writeback_l2, cow-table.c) copies the dirty L2
 *    pages under the lock, then fdatasyncs the file (the data every
 *    copied entry points to was written before the entry was set, so it
 *    is now durable: rule 1), then writes the copies and fdatasyncs
 *    again (rule 4).  The first sync is left out when every new cluster
 *    below the copied entries read as zeros before and lies in a durable
 *    file length: data and entries then share the one sync (cow.c, "One
 *    sync or two").
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

/* ---- writeback ------------------------------------------------------- */

/* QED's only cache is the L2 cache: its writeback is cow-table.c's
 * (rules 1 and 4 are kept there, in cow_write_tables). */
int
qed_writeback (struct qed *q)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.writeback_lock);
  return cow_writeback_l2 (&q->cow);
}

/* ---- creating an L2 table -------------------------------------------- */

/* A new table, shaped as qcow2's (qcow2-table.c): reserved under q->cow.lock,
 * made durable without it, then linked under it.  New allocations wait
 * (creating_table) while it is made. */

/* Drains the allocations in flight: every cluster already reserved lands
 * below the new table and is written back before the table exists.
 * Returns 1 if slot l1_index still needs a table, else 0 (someone else
 * made it; creating_table is clear again). */
static int
begin_table (struct qed *q, uint64_t l1_index)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);

  q->creating_table = true;
  while (q->cow.allocs)
    pthread_cond_wait (&q->cow.cond, &q->cow.lock);
  if (cow_l1_get (&q->cow, l1_index) == 0)
    return 1;
  q->creating_table = false;
  pthread_cond_broadcast (&q->cow.cond);
  return 0;
}

/* Reserves table_bytes at the end of the file for the new table. */
static int
reserve_table (struct qed *q, uint64_t *offset)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);
  int64_t t = cow_append (&q->cow, q->table_bytes);

  if (t == -1)
    return -1;
  *offset = (uint64_t) t;
  /* Without memory the set misses it: a check lost, nothing else. */
  overlap_add (&q->cow.meta, *offset, q->table_bytes, "L2 table");
  return 0;
}

/* Rule 2: the table is durable before the L1 entry that names it.  Called
 * without q->cow.lock: readers and writers of other tables go on. */
static int
table_durable (struct qed *q, uint64_t offset)
{
  CLEANUP_FREE uint8_t *zeros = calloc (1, q->table_bytes);

  if (zeros == NULL)
    return error_file (q->img, ENOMEM, "out of memory");
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
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);

  if (r == 0) {
    /* The table is known to be all zeros. */
    cow_cache_new_table (&q->cow, offset, NULL);
    cow_l1_set (&q->cow, l1_index, offset);
    if (cow_write_table_pages (&q->cow, &q->cow.l1) == -1) {
      cow_set_broken (&q->cow);
      r = -1;
    }
  }
  else if (offset != 0)
    q->cow.leaked = true;           /* the reserved space */
  q->creating_table = false;
  pthread_cond_broadcast (&q->cow.cond);
  return r;
}

/* Gives guest L1 slot l1_index a new, empty L2 table at the end of the
 * file.  Called without q->cow.lock; the caller holds no allocation in
 * flight. */
int
qed_create_l2 (struct qed *q, uint64_t l1_index)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.writeback_lock);
  uint64_t offset = 0;
  int r;

  if (begin_table (q, l1_index) == 0)
    return 0;
  r = cow_writeback_l2 (&q->cow);
  if (r == 0)
    r = qed_set_need_check (q, true);
  if (r == 0)
    r = reserve_table (q, &offset);
  if (r == 0)
    r = table_durable (q, offset);
  return link_table (q, l1_index, offset, r);
}
