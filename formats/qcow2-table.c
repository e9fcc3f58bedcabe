/* SPDX-License-Identifier: BSD-3-Clause */
/* qcow2 tables: entry validation, L1 and L2 access, loading L2 tables
 * into the metadata cache, new and copied L2 tables, dropped references,
 * and writeback.
 *
 * Crash ordering (shared/DESIGN.md, rules 1-6) is kept here:
 *
 *  - qcow2_writeback copies the dirty pages under the lock, then
 *      1. (without lazy refcounts) writes the refcount block copies,
 *      2. fdatasyncs: the data every copied L2 entry points to was
 *         written before the entry was set, so it is durable now (rule
 *         1), and so are the refcounts those entries rely on,
 *      3. writes the L2 copies and fdatasyncs again (rule 4); the sync
 *         of step 2 is left out when no count was raised since the last
 *         writeback (the blocks written hold only counts ahead, which no
 *         entry uses yet, and lowered counts: qcow2-refcount.c, "Counted
 *         ahead") and every new cluster below the copied entries read as
 *         zeros before and lies in a durable file length: data, counts
 *         and entries then share the one sync (cow.c, "One sync or two"),
 *      4. only then lowers the refcounts of the references dropped
 *         before the copy was taken, and punches holes under trimmed or
 *         zeroed clusters whose count reached 0: a cluster's data is
 *         destroyed only once the table change that replaced it is
 *         durable (rule 6).
 *    With lazy refcounts, step 1 waits (the blocks stay dirty in the
 *    cache) until close, a check, or the cache outgrowing its bound; the
 *    dirty bit covers them.
 *  - A new L2 table is a cluster appended past the end (a hole, so zeros)
 *    made durable, with its refcount, before the L1 entry naming it is
 *    written (rule 2).  The L1 write needs no sync of its own: the next
 *    writeback syncs before it writes an entry of the new table (every
 *    table page written outside the writeback calls cow_order_tables).
 *  - A shared L2 table (L1 entry without COPIED) is copied to a new
 *    cluster, COPIED cleared in every entry (the data clusters stay
 *    shared), before its entry is changed; the old table's reference is
 *    dropped like any other.
 *  - The dirty bit is durable before the first change (qcow2.c, rule 3).
 *  - Rule 5 holds by construction: freed clusters are never reused.
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
#include "minmax.h"
#include "qcow2.h"
#include "rounding.h"

/* ---- entries --------------------------------------------------------- */

void
qcow2_compressed_range (const struct qcow2 *q, uint64_t entry,
                        uint64_t *offset, uint64_t *length)
{
  uint64_t coffset = entry & q->coffset_mask;
  uint64_t sectors = ((entry >> q->csize_shift) & q->csize_mask) + 1;

  *offset = coffset;
  *length = sectors * 512 - (coffset & 511);
}

static enum cow_kind
compressed_kind (const struct qcow2 *q, uint64_t entry, uint64_t file_end,
                 const char **why)
{
  uint64_t off, len;

  if (entry & QCOW2_COPIED) {
    *why = "COPIED is set on a compressed cluster";
    return Q_INVALID;
  }
  if (q->h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE) {
    *why = "compressed cluster in an image with a data file";
    return Q_INVALID;
  }
  qcow2_compressed_range (q, entry, &off, &len);
  if (off < q->cluster_size ||
      RANGE_OUTSIDE (off, len, MIN (file_end, q->compressed_end))) {
    *why = "the compressed data lies in the header or past end of file";
    return Q_INVALID;
  }
  return Q_COMPRESSED;
}

/* A host cluster offset from a table: aligned, past the header, inside
 * the file. */
static const char *
host_offset_error (const struct qcow2 *q, uint64_t off, uint64_t file_end)
{
  if (!IS_ALIGNED (off, q->cluster_size))
    return "the cluster offset is not aligned";
  if (RANGE_OUTSIDE (off, q->cluster_size, file_end))
    return "the cluster lies past end of file";
  return NULL;
}

enum cow_kind
qcow2_entry_kind (const struct qcow2 *q, uint64_t entry, uint64_t file_end,
                  const char **why)
{
  uint64_t off = entry & QCOW2_OFFSET_MASK;

  *why = NULL;
  if (entry & QCOW2_COMPRESSED)
    return compressed_kind (q, entry, file_end, why);
  if (entry & QCOW2_L2_RESERVED) {
    *why = "reserved bits are set";
    return Q_INVALID;
  }
  if (entry & QCOW2_ZERO) {
    if (q->h.version < 3 || q->extended_l2) {
      *why = "reserved bit 0 is set";
      return Q_INVALID;
    }
    if (off && (*why = host_offset_error (q, off, file_end)) != NULL)
      return Q_INVALID;
    return Q_ZERO;
  }
  if (off == 0)
    return Q_UNALLOC;
  if ((*why = host_offset_error (q, off, file_end)) != NULL)
    return Q_INVALID;
  return Q_DATA;
}

const char *
qcow2_l1_entry_error (const struct qcow2 *q, uint64_t entry,
                      uint64_t file_end)
{
  uint64_t off = entry & QCOW2_OFFSET_MASK;

  if (entry & QCOW2_L1_RESERVED)
    return "reserved bits are set";
  if (off == 0)
    return NULL;
  if (!IS_ALIGNED (off, q->cluster_size))
    return "the L2 table is not aligned to a cluster";
  if (RANGE_OUTSIDE (off, q->cluster_size, file_end))
    return "the L2 table lies past end of file";
  return NULL;
}

uint64_t
qcow2_l2_get (const struct qcow2 *q, struct mc_entry *l2, uint64_t i)
{
  uint64_t w = mc_word (l2, i * q->l2_entry_bytes);   /* dense or compact */

  return be64_load (&w);
}

uint64_t
qcow2_l2_bitmap (const struct qcow2 *q, struct mc_entry *l2, uint64_t i)
{
  uint64_t w = q->extended_l2 ? mc_word (l2, i * 16 + 8) : 0;

  return be64_load (&w);
}

void
qcow2_l2_set (const struct qcow2 *q, struct mc_entry *l2, uint64_t i,
              uint64_t value)
{
  be64_store (l2->t.data + i * q->l2_entry_bytes, value);
  mc_table_mark (&l2->t, i * q->l2_entry_bytes, 8);
}

/* ---- dropped references ------------------------------------------------ */

int
qcow2_drop_ref (struct qcow2 *q, uint64_t offset, uint64_t length,
                bool punch)
{
  if (q->nr_frees == q->alloc_frees) {
    size_t na = q->alloc_frees ? 2 * q->alloc_frees : 64;
    struct qcow2_free *n = realloc (q->frees, na * sizeof *n);
    if (n == NULL)
      return error_file (q->img, ENOMEM, "out of memory");
    q->frees = n;
    q->alloc_frees = na;
  }
  q->frees[q->nr_frees++] = (struct qcow2_free) { offset, length, punch };
  return 0;
}

int
qcow2_drop_entry (struct qcow2 *q, uint64_t entry, bool punch)
{
  const char *why;
  uint64_t off, len;

  switch (qcow2_entry_kind (q, entry, q->cow.file_end, &why)) {
  case Q_COMPRESSED:
    qcow2_compressed_range (q, entry, &off, &len);
    return qcow2_drop_ref (q, off, len, punch);
  case Q_DATA:
  case Q_ZERO:
    off = entry & QCOW2_OFFSET_MASK;
    return off ? qcow2_drop_ref (q, off, q->cluster_size, punch) : 0;
  default:
    return 0;                   /* nothing held, or nothing trustworthy */
  }
}

int
qcow2_drop_l2_table (struct qcow2 *q, uint64_t l2off)
{
  size_t recorded = q->nr_frees;
  struct mc_entry *l2;
  uint64_t j;
  int ret = 0;

  if (cow_get_l2 (&q->cow, l2off, &l2) == -1)
    return -1;
  for (j = 0; j < q->l2_entries && ret == 0; j++)
    ret = qcow2_drop_entry (q, qcow2_l2_get (q, l2, j), true);
  if (ret == 0)
    ret = qcow2_drop_ref (q, l2off, q->cluster_size, true);
  if (ret == -1) {
    /* All or nothing: the L1 entry still points at the table, so a drop
     * left recorded would lower (and punch) live clusters' counts at the
     * next writeback. */
    q->nr_frees = recorded;
    return -1;
  }
  mc_remove (q->cow.l2_cache, l2);
  return 0;
}

/* Lowers the counts of the dropped references; collects the clusters
 * whose count reached 0 as runs in *punch.  Called with q->cow.lock held. */
static void
apply_frees (struct qcow2 *q, struct qcow2_free *f, size_t n,
             struct qcow2_free **punch, size_t *npunch)
{
  size_t i, alloc = 0;

  *punch = NULL;
  *npunch = 0;
  for (i = 0; i < n; i++) {
    uint64_t c = f[i].offset >> q->cluster_bits;
    uint64_t last = (f[i].offset + f[i].length - 1) >> q->cluster_bits;
    for (; c <= last; c++) {
      uint64_t v;
      /* A count already 0, or a block we cannot read: leave it (the
       * check reports it). */
      if (qcow2_get_refcount (q, c, &v) == -1 || v == 0 ||
          qcow2_set_refcount (q, c, v - 1) == -1 || v > 1 || !f[i].punch)
        continue;
      if (*npunch && (*punch)[*npunch - 1].offset +
          (*punch)[*npunch - 1].length == c << q->cluster_bits) {
        (*punch)[*npunch - 1].length += q->cluster_size;
        continue;
      }
      if (*npunch == alloc) {
        size_t na = alloc ? 2 * alloc : 16;
        struct qcow2_free *np = realloc (*punch, na * sizeof *np);
        if (np == NULL)
          continue;             /* no hole: space is not given back */
        *punch = np;
        alloc = na;
      }
      (*punch)[(*npunch)++] = (struct qcow2_free) {
        c << q->cluster_bits, q->cluster_size };
    }
  }
}

/* ---- writeback ------------------------------------------------------- */

int
qcow2_write_refblocks (struct qcow2 *q)
{
  struct mc_snapshot *snap = mc_snapshot_new ();
  int r;

  if (snap == NULL)
    return error_file (q->img, ENOMEM, "out of memory");
  pthread_mutex_lock (&q->cow.lock);
  r = cow_snapshot_cache (&q->cow, snap, q->rb_cache);
  pthread_mutex_unlock (&q->cow.lock);
  if (r == 0 && !mc_snapshot_empty (snap))
    r = mc_snapshot_write (snap, cow_write_meta, &q->cow);
  pthread_mutex_lock (&q->cow.lock);
  if (r == -1) {
    mc_snapshot_redirty (snap);
    cow_set_broken (&q->cow);
  }
  mc_snapshot_unpin (snap);
  pthread_mutex_unlock (&q->cow.lock);
  mc_snapshot_free (snap);
  return r;
}

/* What one writeback takes under the lock. */
struct wb {
  struct mc_snapshot *rb, *l2;
  bool with_rb;
  bool ordered;                 /* the data synced before the tables */
  uint64_t lengths;             /* for cow_flush_end */
  uint64_t counted_end;         /* the rb snapshot holds the counts of
                                   every cluster below this */
  struct qcow2_free *frees;
  size_t nr_frees;
};

static int
wb_take (struct qcow2 *q, struct wb *w, bool force)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);

  w->with_rb = force || !q->lazy || mc_over_budget (q->rb_cache);
  /* What a forced writeback leaves (a close, a check) has no count that
   * nothing uses. */
  if (force)
    qcow2_uncount_ahead (q, q->cow.file_end);
  if (w->with_rb && cow_snapshot_cache (&q->cow, w->rb, q->rb_cache) == -1)
    return -1;
  if (cow_writeback_begin (&q->cow, w->l2, &w->lengths, &w->ordered) == -1) {
    mc_snapshot_redirty (w->rb);
    mc_snapshot_unpin (w->rb);
    return -1;
  }
  /* Refcounts are durable before the entries that use them (a count of
   * 0 under a reference is corruption, dirty bit or not, to qemu-img
   * check without lazy refcounts): a count raised since the last
   * writeback, like a forced writeback (resize, amend, check), keeps the
   * two syncs.  Blocks that hold only counts ahead, which no entry uses
   * yet, and lowered counts, share the one sync with the entries
   * (qcow2-refcount.c, "Counted ahead"). */
  if (w->with_rb) {
    w->ordered = w->ordered || (q->counts_new && !q->cow.unsafe_one_sync);
    w->counted_end = MAX (q->counted_end, q->cow.file_end);
    q->counts_new = false;
  }
  w->ordered = w->ordered || force;
  /* The references dropped by the table changes in this snapshot. */
  w->frees = q->frees;
  w->nr_frees = q->nr_frees;
  q->frees = NULL;
  q->nr_frees = q->alloc_frees = 0;
  return 0;
}

/* After the writes: on failure keep what could not be written and refuse
 * further writes (the dirty bit stays set); on success lower the dropped
 * references' counts.  Returns the holes to punch. */
static void
wb_finish (struct qcow2 *q, struct wb *w, int r, struct qcow2_free **punch,
           size_t *npunch)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);

  *punch = NULL;
  *npunch = 0;
  if (r == -1) {
    mc_snapshot_redirty (w->rb);
    q->counts_new = q->counts_new || w->with_rb;
  }
  else if (w->with_rb)
    q->counts_durable_end =
      MAX (q->counts_durable_end,
           MIN (w->counted_end, MAX (q->counted_end, q->cow.file_end)));
  mc_snapshot_unpin (w->rb);
  cow_writeback_end (&q->cow, w->l2, w->lengths, w->ordered, r);
  if (r == 0)
    apply_frees (q, w->frees, w->nr_frees, punch, npunch);
  mc_shrink (q->rb_cache);
}

int
qcow2_writeback_wbl (struct qcow2 *q, bool force)
{
  struct wb w = { .rb = mc_snapshot_new (), .l2 = mc_snapshot_new () };
  struct qcow2_free *punch;
  size_t npunch, i;
  int r = -1;

  if (w.rb == NULL || w.l2 == NULL)
    error_file (q->img, ENOMEM, "out of memory");
  else if (wb_take (q, &w, force) == 0) {
    r = 0;
    if (w.with_rb && !mc_snapshot_empty (w.rb))
      r = mc_snapshot_write (w.rb, cow_write_meta, &q->cow);
    /* Rules 1 and 4, and refcounts before tables (ordered). */
    if (r == 0)
      r = cow_write_tables (&q->cow, w.l2, w.ordered);
    wb_finish (q, &w, r, &punch, &npunch);
    /* Rule 6: the tables that dropped these clusters are durable. */
    if (npunch)
      host_may_have_holes (q->img);
    for (i = 0; i < npunch; i++)
      host_punch_hole (q->img->fd, punch[i].length, punch[i].offset);
    free (punch);
  }
  free (w.frees);
  mc_snapshot_free (w.rb);
  mc_snapshot_free (w.l2);
  return r;
}

int
qcow2_writeback (struct qcow2 *q, bool force)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.writeback_lock);
  return qcow2_writeback_wbl (q, force);
}

/* ---- new and copied L2 tables ------------------------------------------- */

/* Reserves one cluster at the end of the file for a table.  Called with
 * writeback_lock and q->cow.lock held; may drop and retake q->cow.lock to grow
 * the refcount structure. */
static int64_t
reserve_table (struct qcow2 *q)
{
  int64_t t;

  while (!qcow2_covered (q, q->cow.file_end, q->cluster_size)) {
    int r;
    pthread_mutex_unlock (&q->cow.lock);
    r = qcow2_cover_wbl (q, q->cluster_size);
    pthread_mutex_lock (&q->cow.lock);
    if (r == -1)
      return -1;
  }
  t = qcow2_alloc_clusters (q, 1);
  /* Without memory the set misses it: a check lost, nothing else. */
  if (t != -1)
    overlap_add (&q->cow.meta, (uint64_t) t, q->cluster_size, "L2 table");
  return t;
}

/* Points L1 slot i at the table at t and writes the L1 page.  Called with
 * writeback_lock and q->cow.lock held. */
static int
link_table (struct qcow2 *q, uint64_t i, uint64_t t, const uint8_t *content)
{
  cow_cache_new_table (&q->cow, t, content);
  cow_l1_set (&q->cow, i, t | QCOW2_COPIED);
  if (cow_write_table_pages (&q->cow, &q->cow.l1) == -1) {
    cow_set_broken (&q->cow);
    return -1;
  }
  return 0;
}

/* Makes the reserved table (and its refcount) durable. */
static int
table_durable (struct qcow2 *q)
{
  if (!q->lazy && qcow2_write_refblocks (q) == -1)
    return -1;
  return cow_fdatasync (&q->cow);
}

int
qcow2_create_l2 (struct qcow2 *q, uint64_t l1_index)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.writeback_lock);
  int64_t t;

  if (qcow2_set_dirty (q, true) == -1)
    return -1;
  pthread_mutex_lock (&q->cow.lock);
  if (cow_l1_get (&q->cow, l1_index) & QCOW2_OFFSET_MASK) {
    pthread_mutex_unlock (&q->cow.lock);    /* someone else made it */
    return 0;
  }
  t = reserve_table (q);
  pthread_mutex_unlock (&q->cow.lock);
  /* Rule 2: the new table (a hole: zeros) is durable before the L1 entry
   * that names it. */
  if (t == -1 || table_durable (q) == -1)
    return -1;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);
  return link_table (q, l1_index, (uint64_t) t, NULL);
}

/* A private copy of the shared table at old: COPIED cleared in every
 * entry.  Called with q->cow.lock held. */
static uint8_t *
copy_table (struct qcow2 *q, uint64_t old)
{
  struct mc_entry *e;
  uint8_t *copy;
  uint64_t j;

  if (cow_get_l2 (&q->cow, old, &e) == -1)
    return NULL;
  copy = malloc (q->cluster_size);
  if (copy == NULL) {
    error_file (q->img, ENOMEM, "out of memory");
    return NULL;
  }
  memcpy (copy, e->t.data, q->cluster_size);
  for (j = 0; j < q->l2_entries; j++) {
    uint8_t *p = copy + j * q->l2_entry_bytes;
    be64_store (p, be64_load (p) & ~QCOW2_COPIED);
  }
  return copy;
}

int
qcow2_cow_l2 (struct qcow2 *q, uint64_t l1_index)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.writeback_lock);
  CLEANUP_FREE uint8_t *copy = NULL;
  uint64_t e, old;
  int64_t t;

  if (qcow2_set_dirty (q, true) == -1)
    return -1;
  pthread_mutex_lock (&q->cow.lock);
  e = cow_l1_get (&q->cow, l1_index);
  old = e & QCOW2_OFFSET_MASK;
  if ((e & QCOW2_COPIED) || old == 0) {
    pthread_mutex_unlock (&q->cow.lock);    /* someone else copied it */
    return 0;
  }
  copy = copy_table (q, old);
  t = copy ? reserve_table (q) : -1;
  pthread_mutex_unlock (&q->cow.lock);
  if (t == -1)
    return -1;
  if (source_pwrite (q->img->src, copy, q->cluster_size, (uint64_t) t) == -1)
    return error_file (q->img, errno, "writing a copy of L2 table 0x%"
                       PRIx64 " at 0x%" PRIx64 ": %s", old, (uint64_t) t,
                       strerror (errno));
  if (table_durable (q) == -1)
    return -1;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);
  if (link_table (q, l1_index, (uint64_t) t, copy) == -1)
    return -1;
  return qcow2_drop_ref (q, old, q->cluster_size, true);
}
