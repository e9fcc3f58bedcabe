/* SPDX-License-Identifier: BSD-3-Clause */
/* qcow2 consistency check and repair.
 *
 * The check rebuilds every reference count from what points to the
 * cluster, as qemu-img check does, and compares: the header cluster, the
 * active and every snapshot L1 table, each L2 table once per L1 table
 * naming it, each data cluster (compressed: each cluster its bytes touch)
 * once per path from an L1 table, the snapshot table, the refcount table
 * and blocks, and persistent bitmaps (when their autoclear bit says they
 * are consistent).
 *
 *   stored < computed   corruption  ("ERROR cluster N refcount=a
 *                                     reference=b"); REPAIR_ERRORS raises
 *                                     the count
 *   stored > computed   leak        ("Leaked cluster N ..."); REPAIR_LEAKS
 *                                     lowers it (and punches a hole under
 *                                     a cluster that became free)
 *
 * Then COPIED is compared with the (repaired) counts in the active
 * tables: a mismatch is a corruption that REPAIR_ERRORS fixes.  Entries
 * that are malformed (reserved bits, misaligned, past end of file) are
 * corruptions; REPAIR_ERRORS drops them from the active tables (the
 * guest sees the backing file there) and from the refcount table (the
 * block is rebuilt at the end of the file).  The counters allocated,
 * fragmented and compressed clusters and image_end_offset are computed as
 * qemu-img check computes them, so the two report the same numbers.
 *
 * A repair leaves the file cut after its last used cluster.  The dirty
 * bit is set before the first fix and cleared only when nothing is left
 * to fix.  The refcount blocks a repair needs (for clusters no block
 * covered) are appended: they lie past the clusters compared here.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "byte-swapping.h"
#include "checked-overflow.h"
#include "cleanup.h"
#include "minmax.h"
#include "qcow2.h"
#include "rounding.h"

struct check {
  struct qcow2 *q;
  struct cow_check *k;          /* what was asked; the file's length */
  uint64_t file_end;            /* entries must point below this */
  uint64_t nclusters;           /* clusters compared */
  uint32_t *refs;               /* computed references (saturating) */
  bool l1_changed;
  bool reft_changed;
};

/* A finding, to the caller's report function. */
#define say(c, ...) cow_say ((c)->k, __VA_ARGS__)

/* Counts one reference to every cluster of [offset, offset + len). */
static void
inc (struct check *c, uint64_t offset, uint64_t len)
{
  uint64_t first, last, k;

  if (len == 0)
    return;
  first = offset >> c->q->cluster_bits;
  last = (offset + len - 1) >> c->q->cluster_bits;
  for (k = first; k <= last && k < c->nclusters; k++)
    if (c->refs[k] < UINT32_MAX)
      c->refs[k]++;
}

/* "ERROR", or "Repairing" when a bad entry of this kind gets fixed. */
static const char *
verb (struct check *c, bool fixable)
{
  return fixable && (c->k->flags & IMAGE_CHECK_REPAIR_ERRORS) ? "Repairing"
                                                           : "ERROR";
}

/* A bad entry: fixed (the caller drops it) or counted. */
static bool
fix_error (struct check *c, bool fixable)
{
  return cow_check_fix (c->k, fixable);
}

/* ---- the L2 tables ------------------------------------------------------ */

/* The subcluster bitmap of an extended entry must fit the entry. */
static bool
bitmap_ok (struct qcow2 *q, enum cow_kind k, uint64_t e, uint64_t bm)
{
  uint32_t alloc = (uint32_t) bm, zero = (uint32_t) (bm >> 32);

  if (k == Q_COMPRESSED)
    return bm == 0;
  return !(alloc & zero) && !(alloc && !(e & QCOW2_OFFSET_MASK));
}

struct l2_walk {
  uint64_t l1_index;
  bool active;                  /* reached from the active L1 table */
  bool exclusive;               /* the table's L1 entry has COPIED */
  uint64_t next_contiguous;     /* fragmentation, as qemu counts it */
};

/* Entry j of a table: counted, and checked.  Called with q->cow.lock held. */
static void
check_entry (struct check *c, struct l2_walk *w, struct mc_entry *l2,
             uint64_t j)
{
  struct qcow2 *q = c->q;
  uint64_t e = qcow2_l2_get (q, l2, j), off, len;
  uint64_t guest = ((w->l1_index << q->l2_bits) + j) << q->cluster_bits;
  bool fixable = w->active && w->exclusive;
  const char *why;
  enum cow_kind k;

  if ((e & QCOW2_COMPRESSED) && (e & QCOW2_COPIED)) {
    say (c, "%s cluster at offset %" PRIu64 ": COPIED set on a "
         "compressed cluster", verb (c, fixable), guest);
    e &= ~QCOW2_COPIED;
    if (fix_error (c, fixable))
      qcow2_l2_set (q, l2, j, e);
  }
  k = qcow2_entry_kind (q, e, c->file_end, &why);
  if (k != Q_INVALID && q->extended_l2 &&
      !bitmap_ok (q, k, e, qcow2_l2_bitmap (q, l2, j))) {
    k = Q_INVALID;
    why = "the subcluster bitmap is inconsistent";
  }
  switch (k) {
  case Q_INVALID:
    say (c, "%s L2 entry 0x%" PRIx64 " (offset %" PRIu64 "): %s",
         verb (c, fixable), e, guest, why);
    if (fix_error (c, fixable))
      qcow2_l2_set (q, l2, j, 0);
    return;
  case Q_COMPRESSED:
    qcow2_compressed_range (q, e, &off, &len);
    inc (c, off & ~511ULL, len + (off & 511));
    if (w->active) {
      c->k->res->allocated_clusters++;
      c->k->res->compressed_clusters++;
      c->k->res->fragmented_clusters++;
    }
    return;
  case Q_DATA:
  case Q_ZERO:
    off = e & QCOW2_OFFSET_MASK;
    if (off == 0)
      return;
    if (w->active) {
      c->k->res->allocated_clusters++;
      if (w->next_contiguous && off != w->next_contiguous)
        c->k->res->fragmented_clusters++;
      w->next_contiguous = off + q->cluster_size;
    }
    inc (c, off, q->cluster_size);
    return;
  case Q_UNALLOC:
    return;
  }
}

static void
check_l2 (struct check *c, struct l2_walk *w, uint64_t l2_offset)
{
  struct qcow2 *q = c->q;
  struct mc_entry *l2;
  uint64_t j;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);
  if ((l2 = cow_check_l2 (&q->cow, c->k, l2_offset)) == NULL)
    return;
  for (j = 0; j < q->l2_entries; j++)
    check_entry (c, w, l2, j);
  l2->pins--;
}

/* An L1 table (the active one when l1 is NULL: read from memory). */
static void
check_l1 (struct check *c, const uint8_t *l1, uint64_t offset,
          uint64_t size, bool active)
{
  struct qcow2 *q = c->q;
  uint64_t i;

  inc (c, offset, size * 8);
  for (i = 0; i < size; i++) {
    uint64_t e = l1 ? be64_load (l1 + i * 8) : cow_l1_get (&q->cow, i);
    const char *why = qcow2_l1_entry_error (q, e, c->file_end);
    struct l2_walk w = { .l1_index = i, .active = active,
                         .exclusive = e & QCOW2_COPIED };

    if (why) {
      say (c, "%s %s L1 entry %" PRIu64 " (0x%" PRIx64 "): %s",
           verb (c, active), active ? "active" : "snapshot", i, e, why);
      if (fix_error (c, active)) {
        cow_l1_set (&q->cow, i, 0);
        c->l1_changed = true;
      }
      continue;
    }
    if ((e & QCOW2_OFFSET_MASK) == 0)
      continue;
    inc (c, e & QCOW2_OFFSET_MASK, q->cluster_size);
    check_l2 (c, &w, e & QCOW2_OFFSET_MASK);
  }
}

static void
check_snapshots (struct check *c)
{
  struct qcow2 *q = c->q;
  uint32_t i;

  for (i = 0; i < q->h.nb_snapshots; i++) {
    struct qcow2_snapshot *sn = &q->snapshots[i];
    CLEANUP_FREE uint8_t *l1 = malloc (MAX ((uint64_t) sn->l1_size * 8,
                                            (uint64_t) 8));
    if (l1 == NULL ||
        source_pread (q->img->src, l1, (uint64_t) sn->l1_size * 8,
                    sn->l1_table_offset) == -1) {
      say (c, "ERROR reading the L1 table of snapshot %s", sn->id);
      c->k->res->check_errors++;
      continue;
    }
    check_l1 (c, l1, sn->l1_table_offset, sn->l1_size, false);
  }
  inc (c, q->h.snapshots_offset, q->snapshots_size);
}

/* ---- refcount structure and bitmaps ------------------------------------- */

static void
check_reftable (struct check *c)
{
  struct qcow2 *q = c->q;
  uint64_t i;

  inc (c, q->h.refcount_table_offset, q->reftable_entries * 8);
  for (i = 0; i < q->reftable_entries; i++) {
    uint64_t e = be64_load (q->reftable.data + i * 8);
    const char *why;
    if (e == 0)
      continue;
    why = qcow2_reft_entry_error (q, e, c->file_end);
    if (why) {
      say (c, "%s refcount table entry %" PRIu64 " (0x%" PRIx64 "): %s",
           verb (c, true), i, e, why);
      if (fix_error (c, true)) {
        be64_store (q->reftable.data + i * 8, 0);
        mc_table_mark (&q->reftable, i * 8, 8);
        c->reft_changed = true;
      }
      continue;
    }
    inc (c, e, q->cluster_size);
  }
}

/* A bitmap's table: the table and the data clusters it names. */
static void
check_bitmap_table (struct check *c, uint64_t offset, uint32_t size)
{
  struct qcow2 *q = c->q;
  uint64_t bytes = (uint64_t) size * 8, i;
  CLEANUP_FREE uint8_t *t = NULL;

  if (!IS_ALIGNED (offset, q->cluster_size) ||
      RANGE_OUTSIDE (offset, bytes, c->file_end) ||
      (t = malloc (bytes ? bytes : 1)) == NULL ||
      source_pread (q->img->src, t, bytes, offset) == -1) {
    say (c, "ERROR bitmap table at 0x%" PRIx64 " is invalid", offset);
    c->k->res->corruptions++;
    return;
  }
  inc (c, offset, bytes);
  for (i = 0; i < size; i++) {
    uint64_t off = be64_load (t + i * 8) & QCOW2_OFFSET_MASK;
    if (off && !RANGE_OUTSIDE (off, q->cluster_size, c->file_end))
      inc (c, off, q->cluster_size);
  }
}

static void
check_bitmaps (struct check *c)
{
  struct qcow2 *q = c->q;
  uint64_t size = q->bitmap_dir_size, pos = 0;
  CLEANUP_FREE uint8_t *dir = NULL;
  uint32_t n;

  if (!q->has_bitmaps ||
      !(q->h.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS))
    return;
  if (size > QCOW2_MAX_SNAPSHOTS_BYTES ||
      RANGE_OUTSIDE (q->bitmap_dir_offset, size, c->file_end) ||
      (dir = malloc (size ? size : 1)) == NULL ||
      source_pread (q->img->src, dir, size, q->bitmap_dir_offset) == -1) {
    say (c, "ERROR the bitmap directory is invalid");
    c->k->res->corruptions++;
    return;
  }
  inc (c, q->bitmap_dir_offset, size);
  for (n = 0; n < q->nb_bitmaps && pos + 24 <= size; n++) {
    uint64_t len = 24 + (uint64_t) be32_load (dir + pos + 20) +
                   be16_load (dir + pos + 18);
    check_bitmap_table (c, be64_load (dir + pos), be32_load (dir + pos + 8));
    pos += ROUND_UP (len, 8);
  }
}

/* ---- comparing ---------------------------------------------------------- */

static int
fix_refcount (struct check *c, uint64_t k, uint64_t value)
{
  struct qcow2 *q = c->q;

  if (!qcow2_covered (q, k << q->cluster_bits, q->cluster_size) &&
      qcow2_cover_range_wbl (q, k << q->cluster_bits, q->cluster_size) == -1)
    return -1;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);
  if (qcow2_set_refcount (q, k, value) == -1)
    return -1;
  if (value == 0) {
    host_may_have_holes (q->img);
    host_punch_hole (q->img->fd, q->cluster_size, k << q->cluster_bits);
  }
  return 0;
}

/* One cluster; returns the stored count (or -1: unknown). */
static int64_t
compare_one (struct check *c, uint64_t k)
{
  struct qcow2 *q = c->q;
  uint64_t stored, computed = c->refs[k];
  bool leak, fix;

  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);
    uint64_t idx = k >> q->rb_bits;
    uint64_t e = idx < q->reftable_entries
                 ? be64_load (q->reftable.data + idx * 8) : 0;

    /* A block the refcount table cannot point to (reported above) holds
     * no count. */
    if (e && qcow2_reft_entry_error (q, e, c->file_end))
      stored = 0;
    else if (qcow2_get_refcount (q, k, &stored) == -1) {
      say (c, "ERROR cannot read the refcount of cluster %" PRIu64 ": %s",
           k, image_error ());
      c->k->res->check_errors++;
      return -1;
    }
  }
  if (stored == computed)
    return (int64_t) stored;
  if (computed > q->refcount_max) {
    say (c, "ERROR cluster %" PRIu64 ": %" PRIu64 " references overflow "
         "the refcount width", k, computed);
    c->k->res->corruptions++;
    return (int64_t) stored;
  }
  leak = stored > computed;
  fix = c->k->flags & (leak ? IMAGE_CHECK_REPAIR_LEAKS
                         : IMAGE_CHECK_REPAIR_ERRORS);
  say (c, "%s cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64,
       fix ? "Repairing" : leak ? "Leaked" : "ERROR", k, stored, computed);
  if (fix && fix_refcount (c, k, computed) == 0) {
    if (leak)
      c->k->res->leaks_fixed++;
    else
      c->k->res->corruptions_fixed++;
    return (int64_t) computed;
  }
  if (leak)
    c->k->res->leaks++;
  else
    c->k->res->corruptions++;
  return (int64_t) stored;
}

static void
compare_refcounts (struct check *c)
{
  uint64_t k, highest = 0;

  for (k = 0; k < c->nclusters; k++) {
    uint32_t computed = c->refs[k];
    int64_t stored = compare_one (c, k);
    if (stored > 0 || computed > 0)
      highest = k;
  }
  c->k->res->image_end_offset = (highest + 1) << c->q->cluster_bits;
}

/* COPIED of one entry against the repaired count; returns the entry as it
 * should be (fixed or not). */
static uint64_t
check_copied (struct check *c, uint64_t e, uint64_t off, const char *what,
              uint64_t where)
{
  uint64_t v;
  bool want;

  if (qcow2_get_refcount (c->q, off >> c->q->cluster_bits, &v) == -1)
    return e;                   /* reported by the comparison */
  want = v == 1;
  if (want == !!(e & QCOW2_COPIED))
    return e;
  say (c, "%s OFLAG_COPIED %s: %" PRIu64 " entry=0x%" PRIx64 " refcount=%"
       PRIu64,
       (c->k->flags & IMAGE_CHECK_REPAIR_ERRORS) ? "Repairing" : "ERROR",
       what, where, e, v);
  if (!fix_error (c, true))
    return e;
  return want ? e | QCOW2_COPIED : e & ~QCOW2_COPIED;
}

static void
check_copied_l2 (struct check *c, uint64_t l2_offset)
{
  struct qcow2 *q = c->q;
  struct mc_entry *l2;
  uint64_t j;

  if (cow_get_l2 (&q->cow, l2_offset, &l2) == -1)
    return;
  for (j = 0; j < q->l2_entries; j++) {
    uint64_t e = qcow2_l2_get (q, l2, j), n;
    const char *why;
    enum cow_kind k = qcow2_entry_kind (q, e, c->file_end, &why);
    if ((k != Q_DATA && k != Q_ZERO) || !(e & QCOW2_OFFSET_MASK))
      continue;
    n = check_copied (c, e, e & QCOW2_OFFSET_MASK, "data cluster: l2_entry",
                      j);
    if (n != e)
      qcow2_l2_set (q, l2, j, n);
  }
}

static void
check_copied_all (struct check *c)
{
  struct qcow2 *q = c->q;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);
  uint64_t i;

  for (i = 0; i < q->h.l1_size; i++) {
    uint64_t e = cow_l1_get (&q->cow, i), n;
    if ((e & QCOW2_OFFSET_MASK) == 0 ||
        qcow2_l1_entry_error (q, e, c->file_end))
      continue;
    n = check_copied (c, e, e & QCOW2_OFFSET_MASK, "L2 cluster: l1_index",
                      i);
    if (n != e) {
      cow_l1_set (&q->cow, i, n);
      c->l1_changed = true;
    }
    check_copied_l2 (c, e & QCOW2_OFFSET_MASK);
  }
}

/* ---- repair ------------------------------------------------------------- */

/* Writes the fixed L1 and refcount tables, then everything else. */
static int
write_fixes (struct check *c)
{
  struct qcow2 *q = c->q;

  if (c->l1_changed || c->reft_changed) {
    int r;
    pthread_mutex_lock (&q->cow.lock);
    r = cow_write_table_pages (&q->cow, &q->cow.l1) == -1 ||
        cow_write_table_pages (&q->cow, &q->reftable) == -1 ? -1 : 0;
    pthread_mutex_unlock (&q->cow.lock);
    if (r == -1 || cow_fdatasync (&q->cow) == -1)
      return -1;
  }
  if (qcow2_writeback_wbl (q, true) == -1 ||
      qcow2_writeback_wbl (q, true) == -1)
    return -1;
  return 0;
}

/* The body of the check: called with writeback_lock held. */
static int
check_wbl (struct check *c)
{
  struct qcow2 *q = c->q;
  struct image_check_result *res = c->k->res;

  res->total_clusters = DIV_ROUND_UP (q->h.size, q->cluster_size);
  inc (c, 0, q->cluster_size);
  check_l1 (c, NULL, q->h.l1_table_offset, q->h.l1_size, true);
  check_snapshots (c);
  check_reftable (c);
  check_bitmaps (c);
  if (res->check_errors)
    return 0;                   /* counts from an incomplete scan lie */
  if (c->k->flags && qcow2_set_dirty (q, true) == -1)
    return -1;
  compare_refcounts (c);
  check_copied_all (c);
  if (!c->k->flags)
    return 0;
  if (write_fixes (c) == -1)
    return -1;
  /* Never cut a cluster whose count is still wrong. */
  if ((c->k->flags & IMAGE_CHECK_REPAIR_LEAKS) && res->corruptions == 0 &&
      qcow2_truncate_free_tail (q) == -1)
    return -1;
  /* Clean: nothing wrong left and the fixes are durable. */
  if (res->corruptions == 0 && res->check_errors == 0 && !q->cow.broken) {
    if (qcow2_clear_corrupt (q) == -1 || qcow2_set_dirty (q, false) == -1)
      return -1;
  }
  return 0;
}

/* cow_ops' check. */
int
qcow2_check_op (void *fmt, struct cow_check *k)
{
  struct check c = { .q = fmt, .k = k };
  struct qcow2 *q = c.q;
  int r;

  c.file_end = MAX (q->cow.file_end, ROUND_UP (k->file_size, q->cluster_size));
  c.nclusters = c.file_end >> q->cluster_bits;
  c.refs = calloc (c.nclusters ? c.nclusters : 1, sizeof *c.refs);
  if (c.refs == NULL)
    return error_file (q->img, ENOMEM, "out of memory for %" PRIu64
                       " reference counts", c.nclusters);
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.writeback_lock);
    r = check_wbl (&c);
  }
  free (c.refs);
  return r;
}
