/* SPDX-License-Identifier: BSD-3-Clause */
/* qcow2's part of the I/O paths: what cow.c asks of the format (runs of
 * L2 entries, readiness for a change, allocation with refcounts, linking
 * new clusters), and write zeroes, trim and the host-hole rule of block
 * status.  Reads, writes and block status are cow.c's, shared with QED.
 *
 * A write goes in place only into a cluster whose L2 entry has COPIED
 * set, in a table whose L1 entry has COPIED set: its refcount is 1, no
 * snapshot sees it.  Everything else - unallocated, zero, compressed, or
 * shared with a snapshot - is an allocating write (cow.c).  Before one,
 * the dirty bit is durable, the L2 table exists and is ours (else it is
 * created or copied first, see qcow2-table.c) and the refcount structure
 * covers the new clusters; they get refcount 1 when reserved; linking
 * them drops the references the old entries held (their counts go down
 * once the new entries are durable).
 *
 * Zeroing whole clusters (version 3) sets the ZERO flag, keeping the host
 * cluster unless the caller may trim; trim unmaps whole clusters (ZERO
 * over a backing file, unallocated without one).  Version 2 has no ZERO
 * flag: zeroing deallocates where nothing shows through, else writes
 * zeros.  Parts of clusters are zeroed in the file when the cluster is
 * ours, else written as zeros.
 *
 * Extended L2 entries (subclusters) are read here, never written: such
 * images are opened read-only (qcow2.c).
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cleanup.h"
#include "minmax.h"
#include "qcow2.h"
#include "rounding.h"

/* ---- lookup ---------------------------------------------------------- */

/* Whether entry en continues a run starting with e0 (n clusters on). */
static bool
continues (struct qcow2 *q, enum cow_kind kind, uint64_t e0, uint64_t en,
           uint64_t n)
{
  const char *why;

  if (qcow2_entry_kind (q, en, q->cow.file_end, &why) != kind)
    return false;
  if (kind != Q_DATA)
    return kind == Q_ZERO || kind == Q_UNALLOC;
  return (en & QCOW2_OFFSET_MASK) == (e0 & QCOW2_OFFSET_MASK) +
         n * q->cluster_size && (en & QCOW2_COPIED) == (e0 & QCOW2_COPIED);
}

/* Extended L2: the run of subclusters of one cluster in the same state. */
static void
lookup_subclusters (struct qcow2 *q, uint64_t e0, uint64_t bitmap,
                    uint64_t in_cluster, uint64_t count,
                    struct cow_run *r)
{
  uint64_t scs = q->subcluster_size, sc = in_cluster / scs, end;
  uint32_t alloc = (uint32_t) bitmap, zero = (uint32_t) (bitmap >> 32);
  enum cow_kind k;

  if (r->kind == Q_INVALID || r->kind == Q_COMPRESSED) {
    if (r->kind == Q_COMPRESSED && bitmap) {
      r->kind = Q_INVALID;
      r->why = "the subcluster bitmap of a compressed cluster is not 0";
    }
    return;
  }
  if ((alloc & zero) || (alloc && !(e0 & QCOW2_OFFSET_MASK))) {
    r->kind = Q_INVALID;
    r->why = "the subcluster bitmap is inconsistent";
    return;
  }
#define SC_KIND(i) ((alloc >> (i)) & 1 ? Q_DATA : (zero >> (i)) & 1 ? Q_ZERO \
                    : Q_UNALLOC)
  k = SC_KIND (sc);
  for (end = sc + 1; end < 32 && SC_KIND (end) == k; end++)
    ;
#undef SC_KIND
  r->kind = k;
  r->host = (e0 & QCOW2_OFFSET_MASK) + in_cluster;
  r->in_place = false;
  r->len = MIN (count, end * scs - in_cluster);
}

/* Describes the run at offset, at most count bytes.  Called with q->cow.lock
 * held (a cache miss reads the table under it, or with cached_only fails
 * with EAGAIN). */
static int
qcow2_lookup (void *fmt, uint64_t offset, uint64_t count, bool cached_only,
              struct cow_run *r)
{
  struct qcow2 *q = fmt;
  uint64_t cs = q->cluster_size, in_cluster = offset & (cs - 1), n = 1;
  uint64_t want = cow_run_start (&q->cow, offset, count, r), l1e, e0;

  l1e = cow_l1_get (&q->cow, r->l1_index);
  r->entry = l1e;
  if ((r->why = qcow2_l1_entry_error (q, l1e, q->cow.file_end)) != NULL) {
    r->kind = Q_INVALID;
    r->bad_table = true;
    r->len = MIN (count, cs - in_cluster);
    return 0;
  }
  if ((l1e & QCOW2_OFFSET_MASK) == 0) {
    r->kind = Q_UNALLOC;
    r->len = MIN (count, want * cs - in_cluster);
    return 0;
  }
  if (cow_lookup_l2 (&q->cow, l1e & QCOW2_OFFSET_MASK, cached_only,
                     r) == -1)
    return -1;
  r->l2_shared = !(l1e & QCOW2_COPIED);
  e0 = qcow2_l2_get (q, r->l2, r->l2_index);
  r->entry = e0;
  r->kind = qcow2_entry_kind (q, e0, q->cow.file_end, &r->why);
  r->len = MIN (count, cs - in_cluster);
  if (q->extended_l2) {
    lookup_subclusters (q, e0, qcow2_l2_bitmap (q, r->l2, r->l2_index),
                        in_cluster, count, r);
    return 0;
  }
  if (r->kind == Q_UNALLOC || r->kind == Q_ZERO || r->kind == Q_DATA)
    while (n < want &&
           continues (q, r->kind, e0,
                      qcow2_l2_get (q, r->l2, r->l2_index + n), n))
      n++;
  if (r->kind == Q_DATA) {
    r->host = (e0 & QCOW2_OFFSET_MASK) + in_cluster;
    r->in_place = (e0 & QCOW2_COPIED) && !r->l2_shared;
  }
  r->len = MIN (count, n * cs - in_cluster);
  return 0;
}

static int
qcow2_invalid (void *fmt, const struct cow_run *r, uint64_t offset)
{
  struct qcow2 *q = fmt;

  return error_file (q->img, EIO, "%s 0x%" PRIx64 " (for offset %" PRIu64
                     ") is invalid: %s: run cowbd-img check -r all",
                     r->bad_table ? "L1 entry" : "L2 entry", r->entry,
                     offset, r->why);
}

/* ---- readiness for a change --------------------------------------------- */

enum { NEED_DIRTY = COW_NEED, NEED_L2, NEED_COW_L2, NEED_COVER };

static int
qcow2_check_ready (void *fmt, const struct cow_run *r, uint64_t alloc_bytes)
{
  struct qcow2 *q = fmt;

  if (__atomic_load_n (&q->corrupt, __ATOMIC_ACQUIRE))
    return error_file (q->img, EIO, "the image is marked corrupt: repair "
                       "it with cowbd-img check -r all");
  if (!__atomic_load_n (&q->cow.marked, __ATOMIC_ACQUIRE))
    return NEED_DIRTY;
  if (r->l2 == NULL)
    return NEED_L2;
  if (r->l2_shared)
    return NEED_COW_L2;
  if (mc_make_dense (q->cow.l2_cache, r->l2) == -1)
    return error_file (q->img, ENOMEM, "out of memory for an L2 table");
  if (alloc_bytes && !qcow2_covered (q, q->cow.file_end, alloc_bytes))
    return NEED_COVER;
  return 0;
}

static int
qcow2_make_ready (void *fmt, int need, const struct cow_run *r,
                  uint64_t alloc_bytes)
{
  struct qcow2 *q = fmt;

  switch (need) {
  case NEED_DIRTY: return qcow2_set_dirty (q, true);
  case NEED_L2: return qcow2_create_l2 (q, r->l1_index);
  case NEED_COW_L2: return qcow2_cow_l2 (q, r->l1_index);
  case NEED_COVER: return qcow2_cover (q, alloc_bytes);
  }
  abort ();
}

/* ---- allocation --------------------------------------------------------- */

static int64_t
qcow2_reserve (void *fmt, uint64_t n)
{
  return qcow2_alloc_clusters (fmt, n);
}

/* Points the n entries of the run at the new clusters, dropping what the
 * old entries held. */
static int
qcow2_link (void *fmt, const struct cow_run *r, uint64_t n, uint64_t host)
{
  struct qcow2 *q = fmt;
  uint64_t i;

  for (i = 0; i < n; i++) {
    uint64_t old = qcow2_l2_get (q, r->l2, r->l2_index + i);
    /* A zero cluster's host cluster is never read: its blocks can go. */
    if (qcow2_drop_entry (q, old, (old & (QCOW2_ZERO | QCOW2_COMPRESSED))
                          == QCOW2_ZERO) == -1)
      return -1;
    qcow2_l2_set (q, r->l2, r->l2_index + i,
                  (host + i * q->cluster_size) | QCOW2_COPIED);
  }
  return 0;
}

/* A failed allocating write (ENOSPC, EIO): no table names its clusters.
 * Their counts go back to 0 (the next writeback writes them, so a clean
 * close leaves no leak), and if they are still the last clusters the
 * file is cut before them, which also drops whatever part of the write
 * reached them (a later allocation there must find holes).  Elsewhere
 * they stay free for good: allocation only appends.  If a count cannot
 * be changed, the leak is remembered and the dirty bit stays.  Also for a
 * fill that failed (a lost remote backing image).  Called with q->cow.lock
 * held. */
static void
qcow2_give_back (void *fmt, uint64_t host, uint64_t n)
{
  struct qcow2 *q = fmt;
  uint64_t i, c0 = host >> q->cluster_bits, end = host + n * q->cluster_size;

  for (i = 0; i < n; i++)
    if (qcow2_set_refcount (q, c0 + i, 0) == -1) {
      q->cow.leaked = true;
      return;
    }
  if (cow_cut_back (&q->cow, host, end)) {
    qcow2_uncount_ahead (q, host);
    qcow2_zfree_cut (q);
  }
  else
    host_punch_hole (q->img->fd, end - host, host);  /* space, if it can */
}

static int
qcow2_read_compressed_op (void *fmt, uint64_t entry, uint8_t *out)
{
  return qcow2_read_compressed (fmt, entry, out);
}

static bool
qcow2_over_budget (void *fmt)
{
  struct qcow2 *q = fmt;

  return mc_over_budget (q->cow.l2_cache) || mc_over_budget (q->rb_cache);
}

static int
qcow2_writeback_op (void *fmt)
{
  return qcow2_writeback (fmt, false);
}

/* qemu's answer to a write on metadata: the corrupt bit, durably; the
 * image is then opened read-only until repaired. */
static void
qcow2_mark_corrupt (void *fmt)
{
  struct qcow2 *q = fmt;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->header_lock);

  q->h.incompatible_features |= QCOW2_INCOMPAT_CORRUPT;
  __atomic_store_n (&q->corrupt, true, __ATOMIC_RELEASE);
  qcow2_write_header_fields (q, 72, 8);  /* sticky if it fails */
}

static bool qcow2_host_checked (void *fmt);

/* ---- write zeroes and trim ---------------------------------------------- */

static bool
reads_zero_below (struct qcow2 *q, uint64_t offset, uint64_t len)
{
  return chain_backing_is_zero (q->img, offset, len);
}

/* Whether zeroing part of a cluster in run r needs no copy on write. */
static bool
qcow2_zero_partial_fast (void *fmt, const struct cow_run *r, uint64_t len,
                         uint64_t offset)
{
  switch (r->kind) {
  case Q_DATA: return r->in_place;
  case Q_ZERO: return true;
  case Q_UNALLOC: return reads_zero_below (fmt, offset, len);
  default: return false;
  }
}

/* Whole clusters: zero clusters, except in version 2, which has none. */
static bool
qcow2_zero_whole_fast (void *fmt, const struct cow_run *r, uint64_t len,
                       uint64_t offset)
{
  struct qcow2 *q = fmt;

  return q->h.version >= 3 || (r->kind == Q_DATA && r->in_place) ||
         reads_zero_below (q, offset, len);
}

const struct cow_ops qcow2_cow_ops = {
  COW_OPS_STANDARD (qcow2),
  .read_compressed = qcow2_read_compressed_op,
  .zreserve = qcow2_zreserve,
  .zlink = qcow2_zlink,
  .zgive_back = qcow2_zgive_back,
  .host_checked = qcow2_host_checked,
  .mark_corrupt = qcow2_mark_corrupt,
};

/* Zeros len bytes (within one cluster) at offset. */
static int
zero_partial (struct qcow2 *q, const struct cow_run *r, uint64_t len,
              uint64_t offset, unsigned flags)
{
  if (r->kind == Q_DATA && r->in_place)
    return cow_zero_in_place (&q->cow, r->host, len, flags);
  if (qcow2_zero_partial_fast (q, r, len, offset))
    return 0;
  return cow_zero_by_write (&q->cow, len, offset, flags, "part of a cluster "
                            "needs a copy on write");
}

/* New values of the entries of a zero or trim: what the old entry
 * becomes.  `plain`: drop the host cluster, else keep it (ZERO flag). */
enum entry_op { OP_ZERO_KEEP, OP_ZERO_PLAIN, OP_UNMAP };

static uint64_t
new_entry (struct qcow2 *q, uint64_t old, enum entry_op op, bool *drop)
{
  const char *why;
  enum cow_kind k = qcow2_entry_kind (q, old, q->cow.file_end, &why);

  *drop = false;
  if (op == OP_ZERO_KEEP && (k == Q_DATA || k == Q_ZERO))
    return old | QCOW2_ZERO;
  *drop = k == Q_DATA || k == Q_ZERO || k == Q_COMPRESSED;
  return op == OP_UNMAP ? 0 : QCOW2_ZERO;
}

/* cow_set_fn: changes n entries of r as *(enum entry_op *) arg says. */
static int
set_entries (void *fmt, const struct cow_run *r, uint64_t n, void *arg)
{
  struct qcow2 *q = fmt;
  enum entry_op op = *(enum entry_op *) arg;
  uint64_t i;

  for (i = 0; i < n; i++) {
    uint64_t old = qcow2_l2_get (q, r->l2, r->l2_index + i), v;
    bool drop;
    v = new_entry (q, old, op, &drop);
    if (drop && qcow2_drop_entry (q, old, true) == -1)
      return -1;
    if (v != old)
      qcow2_l2_set (q, r->l2, r->l2_index + i, v);
  }
  return 0;
}

static int
change_entries (struct qcow2 *q, uint64_t offset, uint64_t len,
                enum entry_op op, uint64_t *done)
{
  return cow_change (&q->cow, offset, len, set_entries, &op, done);
}

/* Whole clusters of run r at offset, len bytes (a multiple of the
 * cluster size). */
static int
zero_whole (struct qcow2 *q, const struct cow_run *r, uint64_t offset,
            uint64_t len, unsigned flags, uint64_t *done)
{
  *done = len;
  if (r->kind == Q_ZERO && !(flags & IMAGE_MAY_TRIM))
    return 0;
  if (r->kind == Q_UNALLOC && (r->l2 == NULL || q->h.version < 3) &&
      reads_zero_below (q, offset, len))
    return 0;                           /* reads as zeros already */
  if (q->h.version >= 3)
    return change_entries (q, offset, len,
                           (flags & IMAGE_MAY_TRIM) ? OP_ZERO_PLAIN
                                                    : OP_ZERO_KEEP, done);
  /* Version 2: unmap where nothing shows through, else zeros. */
  if (r->kind != Q_UNALLOC && reads_zero_below (q, offset, len))
    return change_entries (q, offset, len, OP_UNMAP, done);
  if (r->kind == Q_DATA && r->in_place)
    return cow_zero_in_place (&q->cow, r->host, len, flags);
  return cow_zero_by_write (&q->cow, len, offset, flags, "version 2 images "
                            "have no zero clusters");
}

/* cow_run_fn: zeros part of a cluster, or the whole clusters of run r. */
static int
zero_run (struct cow *c, const struct cow_run *r, uint64_t offset,
          unsigned flags, uint64_t *done)
{
  struct qcow2 *q = (struct qcow2 *) c;

  if (r->kind == Q_INVALID)
    return qcow2_invalid (q, r, offset);
  *done = cow_partial_len (c, r, offset);
  if (*done)
    return zero_partial (q, r, *done, offset, flags);
  return zero_whole (q, r, offset, ROUND_DOWN (r->len, q->cluster_size),
                     flags, done);
}

int
qcow2_zero (struct image *img, uint64_t count, uint64_t offset,
            unsigned flags)
{
  return cow_zero (img->priv, count, offset, flags, zero_run);
}

/* Gives back the space under our own data in part of a cluster. */
static int
trim_partial (struct qcow2 *q, const struct cow_run *r, uint64_t len)
{
  if (r->kind == Q_DATA && r->in_place)
    return cow_punch (&q->cow, r->host, len);
  return 0;
}

/* Whole clusters of run r: unmapped (version 3: ZERO over a backing
 * file), or for version 2 over a backing file, holes punched in our own
 * clusters. */
static int
trim_whole (struct qcow2 *q, const struct cow_run *r, uint64_t offset,
            uint64_t len, uint64_t *done)
{
  struct image *b = q->img->backing;
  bool shows_through = b && offset < b->size;

  *done = len;
  if (r->kind == Q_UNALLOC || (r->kind == Q_ZERO && shows_through))
    return 0;
  if (!shows_through)
    return change_entries (q, offset, len, OP_UNMAP, done);
  if (q->h.version >= 3)
    return change_entries (q, offset, len, OP_ZERO_PLAIN, done);
  return trim_partial (q, r, len);
}

/* cow_run_fn: gives back part of a cluster, or the whole clusters of
 * run r. */
static int
trim_run (struct cow *c, const struct cow_run *r, uint64_t offset,
          unsigned flags, uint64_t *done)
{
  struct qcow2 *q = (struct qcow2 *) c;

  if (r->kind == Q_INVALID)
    return qcow2_invalid (q, r, offset);
  *done = cow_partial_len (c, r, offset);
  if (*done)
    return trim_partial (q, r, *done);
  return trim_whole (q, r, offset, ROUND_DOWN (r->len, q->cluster_size),
                     done);
}

int
qcow2_trim (struct image *img, uint64_t count, uint64_t offset,
            unsigned flags)
{
  return cow_trim (img->priv, count, offset, flags, trim_run);
}

/* ---- block status ---------------------------------------------------- */

/* Whether extents should split data clusters where the host file has
 * holes (and call those parts zero).  qemu does so only for an image that
 * looks preallocated: more clusters with a reference than blocks the
 * host file occupies (a tenth more, or two).  We decide the same way, once
 * per open, so that map and NBD block status agree with qemu's.  Called
 * with q->cow.lock held. */
static bool
holes_read_zero (struct qcow2 *q)
{
  uint64_t length, allocated, real, threshold, count = 0, c, end, v;
  struct stat st;

  if (q->holes_read_zero >= 0)
    return q->holes_read_zero;
  q->holes_read_zero = 0;
  if (fstat (q->img->fd, &st) == -1 || source_size (q->img->src, &length))
    return false;
  allocated = (uint64_t) st.st_blocks * 512;
  real = allocated >> q->cluster_bits;
  threshold = MAX (real * 10 / 9, real + 2);
  end = DIV_ROUND_UP (length, q->cluster_size);
  for (c = 0; c < end && count < threshold; c++)
    if (qcow2_get_refcount (q, c, &v) == 0 && v)
      count++;
  q->holes_read_zero = count >= threshold;
  return q->holes_read_zero;
}

static bool
qcow2_host_checked (void *fmt)
{
  return !holes_read_zero (fmt);
}
