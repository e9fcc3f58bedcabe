/* SPDX-License-Identifier: BSD-3-Clause */
/* QED consistency check and repair.
 *
 * The invariants (QED specification, "Consistency checking"): every
 * cluster is referenced once at most; every offset is aligned and inside
 * the file; a table fits in the file.  A cluster referenced by nothing is
 * leaked.
 *
 * Counting follows qemu-img check, so that the two report the same
 * numbers: allocated clusters are the non-special L2 entries (valid or
 * not); a cluster is fragmented when it does not follow the previous
 * allocated cluster of the same L2 table in the file; leaks are counted
 * from the end of the header to the end of the file.
 *
 * Repair:
 *  - REPAIR_ERRORS drops invalid entries and second references to a
 *    cluster (the entry becomes 0: the guest sees the backing file there).
 *  - REPAIR_LEAKS gives leaked clusters back.  Leaks at the end of the
 *    file are truncated away.  Leaks further in, which a crash can leave
 *    when the writeback of several L2 pages is cut short, are filled by
 *    moving the last data clusters of the file into them (copy, sync,
 *    repoint the L2 entry, sync), after which the end of the file is free
 *    and truncated.  L2 tables are never moved: the engine never leaves
 *    a leak below a table (qed-table.c, qed_create_l2).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "qed.h"
#include "rounding.h"

struct check {
  struct qed *q;
  struct cow_check *k;          /* what was asked; the file's length */
  uint64_t nclusters;
  uint64_t *used;               /* referenced clusters */
  uint64_t *table;              /* clusters holding header or tables */
  bool l1_changed;
};

static bool
test_bit (const uint64_t *map, uint64_t n)
{
  return map[n / 64] & (1ULL << (n % 64));
}

static void
set_bit (uint64_t *map, uint64_t n)
{
  map[n / 64] |= 1ULL << (n % 64);
}

static void
clear_bit (uint64_t *map, uint64_t n)
{
  map[n / 64] &= ~(1ULL << (n % 64));
}

/* A finding, to the caller's report function. */
#define say(c, ...) cow_say ((c)->k, __VA_ARGS__)

/* Marks n clusters from offset as referenced; false if any already was. */
static bool
mark_used (struct check *c, uint64_t offset, uint64_t n, bool is_table)
{
  uint64_t first = offset >> c->q->cluster_bits, i;
  bool ok = true;

  for (i = first; i < first + n && i < c->nclusters; i++) {
    if (test_bit (c->used, i))
      ok = false;
    set_bit (c->used, i);
    if (is_table)
      set_bit (c->table, i);
  }
  return ok;
}

/* A bad entry: counted as fixed (and dropped) or as a corruption. */
static bool
bad_entry (struct check *c)
{
  return cow_check_fix (c->k, true);
}

static void
check_l2 (struct check *c, uint64_t l1_index, struct mc_entry *l2)
{
  struct qed *q = c->q;
  uint64_t last = 0, j;

  for (j = 0; j < q->table_entries; j++) {
    uint64_t e = qed_l2_get (l2, j);
    uint64_t guest = ((l1_index << q->table_bits) + j) << q->cluster_bits;

    if (e == QED_UNALLOCATED || e == QED_ZERO_CLUSTER)
      continue;
    c->k->res->allocated_clusters++;
    if (last && last + q->cluster_size != e)
      c->k->res->fragmented_clusters++;
    last = e;
    if (qed_entry_kind (q, e, c->k->file_size) == QED_E_INVALID) {
      say (c, "ERROR cluster for offset %" PRIu64 ": invalid offset 0x%"
           PRIx64, guest, e);
      if (bad_entry (c))
        qed_l2_set (l2, j, QED_UNALLOCATED);
    }
    else if (!mark_used (c, e, 1, false)) {
      say (c, "ERROR cluster 0x%" PRIx64 " (offset %" PRIu64 ") is "
           "referenced more than once", e, guest);
      if (bad_entry (c))
        qed_l2_set (l2, j, QED_UNALLOCATED);
    }
  }
}

static void
check_l1 (struct check *c)
{
  struct qed *q = c->q;
  uint64_t i;

  mark_used (c, 0, q->h.header_size, true);
  mark_used (c, q->h.l1_table_offset, q->h.table_size, true);

  for (i = 0; i < q->table_entries; i++) {
    uint64_t off = cow_l1_get (&q->cow, i);
    struct mc_entry *l2;

    if (off == 0)
      continue;
    if (!qed_table_offset_valid (q, off, c->k->file_size) ||
        !mark_used (c, off, q->h.table_size, true)) {
      say (c, "ERROR L2 table 0x%" PRIx64 " (L1 entry %" PRIu64 ") is "
           "invalid or overlaps other metadata", off, i);
      if (bad_entry (c)) {
        cow_l1_set (&q->cow, i, 0);
        c->l1_changed = true;
      }
      continue;
    }
    pthread_mutex_lock (&q->cow.lock);
    if ((l2 = cow_check_l2 (&q->cow, c->k, off)) != NULL) {
      check_l2 (c, i, l2);
      l2->pins--;
    }
    pthread_mutex_unlock (&q->cow.lock);
  }
}

static void
count_leaks (struct check *c)
{
  uint64_t i, run = 0;

  for (i = c->q->h.header_size; i <= c->nclusters; i++) {
    if (i < c->nclusters && !test_bit (c->used, i)) {
      run++;
      continue;
    }
    if (run)
      say (c, "Leaked clusters: %" PRIu64 " from 0x%" PRIx64, run,
           (i - run) << c->q->cluster_bits);
    c->k->res->leaks += run;
    run = 0;
  }
}

/* ---- repair ------------------------------------------------------------ */

/* Writes the fixed L1 table, then the fixed L2 tables. */
static int
write_fixes (struct check *c)
{
  struct qed *q = c->q;

  if (qed_writeback (q) == -1)
    return -1;
  if (c->l1_changed) {
    if (source_pwrite (q->img->src, q->cow.l1.data, q->table_bytes,
                     q->h.l1_table_offset) == -1 ||
        cow_sync (&q->cow) == -1)
      return error_syscall (q->img, "writing the L1 table");
    mc_table_clean (&q->cow.l1);
  }
  return 0;
}

/* The highest referenced cluster, or 0. */
static uint64_t
last_used (struct check *c)
{
  uint64_t i = c->nclusters;

  while (i > 0 && !test_bit (c->used, i - 1))
    i--;
  return i ? i - 1 : 0;
}

/* Repoints the L2 entry that references cluster `from` to `to`; returns 1
 * when found.  Scans the tables (a repair is rare and the moves few). */
static int
repoint (struct check *c, uint64_t from, uint64_t to)
{
  struct qed *q = c->q;
  uint64_t i, j;

  for (i = 0; i < q->table_entries; i++) {
    uint64_t off = cow_l1_get (&q->cow, i);
    struct mc_entry *l2;
    if (off == 0 || !qed_table_offset_valid (q, off, c->k->file_size))
      continue;
    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);
      if (cow_get_l2 (&q->cow, off, &l2) == -1)
        return -1;
      for (j = 0; j < q->table_entries; j++)
        if (qed_l2_get (l2, j) == from) {
          qed_l2_set (l2, j, to);
          return 1;
        }
    }
  }
  return 0;
}

/* Moves the last data cluster of the file into the lowest leak, as long
 * as one lies below it.  Returns the number of clusters moved. */
static int64_t
fill_holes (struct check *c)
{
  struct qed *q = c->q;
  uint64_t cs = q->cluster_size, hole = q->h.header_size, top, moved = 0;
  CLEANUP_FREE uint8_t *buf = malloc (cs);

  if (buf == NULL)
    return error_file (q->img, ENOMEM, "out of memory");
  for (;;) {
    int r;
    while (hole < c->nclusters && test_bit (c->used, hole))
      hole++;
    top = last_used (c);
    if (hole >= top || test_bit (c->table, top))
      break;
    /* The copy is durable before the entry that points to it. */
    if (source_pread (q->img->src, buf, cs, top * cs) == -1 ||
        source_pwrite (q->img->src, buf, cs, hole * cs) == -1 ||
        cow_sync (&q->cow) == -1)
      return error_syscall (q->img, "moving a cluster");
    r = repoint (c, top * cs, hole * cs);
    if (r == -1)
      return -1;
    if (r == 0)
      break;                    /* not a data cluster after all */
    set_bit (c->used, hole);
    clear_bit (c->used, top);
    moved++;
    /* Writing back every few moves bounds the dirty tables. */
    if (moved % 64 == 0 && qed_writeback (q) == -1)
      return -1;
  }
  if (qed_writeback (q) == -1)
    return -1;
  return (int64_t) moved;
}

static int
repair_leaks (struct check *c)
{
  struct qed *q = c->q;
  uint64_t end, before = c->k->res->leaks, left, i;
  int64_t moved;

  moved = fill_holes (c);
  if (moved == -1)
    return -1;
  end = (last_used (c) + 1) << q->cluster_bits;
  if (end < c->k->file_size) {
    if (ftruncate (q->img->fd, (off_t) end) == -1 || cow_sync (&q->cow) == -1)
      return error_syscall (q->img, "truncating leaked clusters");
    c->k->file_size = end;
    c->nclusters = end >> q->cluster_bits;
    q->cow.file_end = q->cow.file_length = end;
  }
  for (left = 0, i = q->h.header_size; i < c->nclusters; i++)
    if (!test_bit (c->used, i))
      left++;
  c->k->res->leaks_fixed = before - left;
  c->k->res->leaks = left;
  return 0;
}

/* The scan, then the repairs asked for. */
static int
check_and_repair (struct check *c)
{
  struct image_check_result *res = c->k->res;

  check_l1 (c);
  if (res->check_errors == 0)
    count_leaks (c);           /* only after a complete scan */
  if (res->corruptions_fixed && write_fixes (c) == -1)
    return -1;
  if ((c->k->flags & IMAGE_CHECK_REPAIR_LEAKS) && res->leaks &&
      res->check_errors == 0 && repair_leaks (c) == -1)
    return -1;
  /* Clean: nothing wrong left and the fixes are durable. */
  if (c->k->flags && res->corruptions == 0 && res->check_errors == 0 &&
      !c->q->cow.broken)
    return qed_set_need_check (c->q, false);
  return 0;
}

/* cow_ops' check. */
int
qed_check_op (void *fmt, struct cow_check *k)
{
  struct check c = { .q = fmt, .k = k };
  size_t words;
  int r;

  c.nclusters = DIV_ROUND_UP (k->file_size, c.q->cluster_size);
  words = DIV_ROUND_UP (c.nclusters, (uint64_t) 64) + 1;
  c.used = calloc (words, sizeof *c.used);
  c.table = calloc (words, sizeof *c.table);
  k->res->total_clusters = DIV_ROUND_UP (c.q->h.image_size,
                                         c.q->cluster_size);
  if (c.used == NULL || c.table == NULL)
    r = error_file (c.q->img, ENOMEM, "out of memory for the cluster bitmap");
  else
    r = check_and_repair (&c);
  free (c.used);
  free (c.table);
  return r;
}
