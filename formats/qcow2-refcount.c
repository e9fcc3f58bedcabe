/* SPDX-License-Identifier: BSD-3-Clause */
/* qcow2 reference counts: entries of every width (refcount_order 0 to 6),
 * refcount blocks in the metadata cache, allocation at the end of the
 * file, and growing the refcount structure.
 *
 * Allocation appends: qcow2_alloc_clusters hands out clusters at file_end
 * and counts them (0 -> 1) in the cached refcount blocks.  The host file
 * is grown ahead of file_end with ftruncate, so a new cluster reads as
 * zeros until written: the I/O paths never write zero fills, and a new L2
 * table needs no write at all.
 *
 * The refcount structure grows when file_end reaches clusters no refcount
 * block covers.  qcow2_cover_wbl then appends, in one area at the end of
 * the file,
 *
 *   +------------------+------------------+---------------------------+
 *   | new refcount     | ... one for each | new refcount table (only  |
 *   | block            | uncovered index  | when the old one is full) |
 *   +------------------+------------------+---------------------------+
 *   A (old file_end)                                          new file_end
 *
 * sized so that the new blocks cover the area itself (a block may count
 * its own cluster).  Crash order: the blocks (and the new table) are
 * written and synced before anything points to them; then either the
 * refcount table entries are written (made durable by the next
 * writeback's first sync, before any L2 entry whose refcount they hold),
 * or the header is switched to the new table with a synced write, after
 * which the old table's clusters are freed like any dropped reference.
 *
 * Counted ahead (without lazy refcounts).  A count must be durable before
 * an entry that uses it, so a writeback that wrote a raised count syncs
 * before it writes the entries: two syncs.  To keep an allocating flush
 * at one sync, the clusters the file grows by (host_grow_file: steps of 1
 * MiB, half a step ahead of file_end) are counted when it grows, before
 * any entry can use them; the next writeback writes those counts with
 * its tables, and an allocation among clusters whose counts a finished
 * writeback made durable raises nothing: its data and its entry may then
 * share one sync (cow.c, "One sync or two").  Counts ahead that are
 * unused when the image is closed (or a forced writeback runs, or the
 * file is cut back) go back to 0 first, so a clean close leaves no leak;
 * a crash leaves at most the counts of one step's unused clusters, which
 * qemu-img check reports as leaked clusters, not corruption, and which
 * the next read-write open gives back, as the image is left dirty
 * (qcow2.c, "The dirty bit").  Version 2 has no dirty bit: its leaks would
 * stay, so it counts nothing ahead and keeps the two syncs.
 *
 *   counts_durable_end <= counted_end; an allocation ending past
 *   counts_durable_end, or any count raised otherwise (qcow2_set_refcount),
 *   sets counts_new, which keeps the next writeback's first sync.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "byte-swapping.h"
#include "checked-overflow.h"
#include "cleanup.h"
#include "minmax.h"
#include "qcow2.h"
#include "rounding.h"

/* ---- entries of every width --------------------------------------------- */

uint64_t
qcow2_rb_get (const struct qcow2 *q, const uint8_t *block, uint64_t i)
{
  unsigned bits = q->refcount_bits;

  switch (bits) {
  case 64: return be64_load (block + i * 8);
  case 32: return be32_load (block + i * 4);
  case 16: return be16_load (block + i * 2);
  case 8: return block[i];
  default: {
      uint64_t bit = i * bits;
      return (block[bit / 8] >> (bit % 8)) & ((1U << bits) - 1);
    }
  }
}

/* Stores an entry without dirty tracking; returns the byte range it
 * touched. */
static void
rb_store (const struct qcow2 *q, uint8_t *b, uint64_t i, uint64_t value,
          uint64_t *start, uint64_t *len)
{
  unsigned bits = q->refcount_bits;

  assert (value <= q->refcount_max);
  *len = bits >= 8 ? bits / 8 : 1;
  *start = i * bits / 8;
  switch (bits) {
  case 64: be64_store (b + *start, value); break;
  case 32: be32_store (b + *start, (uint32_t) value); break;
  case 16: be16_store (b + *start, (uint16_t) value); break;
  case 8: b[*start] = (uint8_t) value; break;
  default: {
      unsigned shift = (unsigned) (i * bits % 8);
      unsigned mask = ((1U << bits) - 1) << shift;
      b[*start] = (uint8_t) ((b[*start] & ~mask) |
                             ((unsigned) value << shift));
    }
  }
}

void
qcow2_rb_set (const struct qcow2 *q, struct mc_table *t, uint64_t i,
              uint64_t value)
{
  uint64_t start, len;

  rb_store (q, t->data, i, value, &start, &len);
  mc_table_mark (t, start, len);
}

/* ---- refcount blocks ---------------------------------------------------- */

const char *
qcow2_reft_entry_error (const struct qcow2 *q, uint64_t entry,
                        uint64_t file_end)
{
  uint64_t off = entry & ~QCOW2_REFT_RESERVED;

  if (entry & QCOW2_REFT_RESERVED)
    return "reserved bits are set";
  if (!IS_ALIGNED (off, q->cluster_size))
    return "it is not aligned to a cluster";
  if (RANGE_OUTSIDE (off, q->cluster_size, file_end))
    return "it lies past end of file";
  return NULL;
}

int
qcow2_get_rb (struct qcow2 *q, uint64_t offset, struct mc_entry **ep)
{
  return cow_load_table (&q->cow, q->rb_cache, offset, "refcount block", ep);
}

static uint64_t
reft_get (const struct qcow2 *q, uint64_t i)
{
  return be64_load (q->reftable.data + i * 8);
}

/* The block counting host cluster c (NULL: none, the count is 0). */
static int
block_of (struct qcow2 *q, uint64_t c, struct mc_entry **ep)
{
  uint64_t idx = c >> q->rb_bits, entry;
  const char *why;

  *ep = NULL;
  if (idx >= q->reftable_entries || (entry = reft_get (q, idx)) == 0)
    return 0;
  why = qcow2_reft_entry_error (q, entry, q->cow.file_end);
  if (why)
    return error_file (q->img, EIO, "refcount table entry %" PRIu64 " (0x%"
                       PRIx64 ") is invalid: %s: run cowbd-img check -r all",
                       idx, entry, why);
  return qcow2_get_rb (q, entry & ~QCOW2_REFT_RESERVED, ep);
}

int
qcow2_get_refcount (struct qcow2 *q, uint64_t c, uint64_t *value)
{
  struct mc_entry *e;

  if (block_of (q, c, &e) == -1)
    return -1;
  *value = e ? qcow2_rb_get (q, e->t.data, c & ((1ULL << q->rb_bits) - 1))
             : 0;
  return 0;
}

/* Sets the count of cluster c; *raised: whether that raised it. */
static int
store_count (struct qcow2 *q, uint64_t c, uint64_t value, bool *raised)
{
  uint64_t i = c & ((1ULL << q->rb_bits) - 1);
  struct mc_entry *e;

  if (block_of (q, c, &e) == -1)
    return -1;
  if (e == NULL)
    return error_file (q->img, EIO, "no refcount block covers cluster %"
                       PRIu64, c);
  *raised = value > qcow2_rb_get (q, e->t.data, i);
  qcow2_rb_set (q, &e->t, i, value);
  return 0;
}

int
qcow2_set_refcount (struct qcow2 *q, uint64_t c, uint64_t value)
{
  bool raised;

  if (store_count (q, c, value, &raised) == -1)
    return -1;
  if (raised)
    q->counts_new = true;
  return 0;
}

bool
qcow2_covered (struct qcow2 *q, uint64_t offset, uint64_t length)
{
  uint64_t first, last, i;

  if (length == 0)
    return true;
  first = (offset >> q->cluster_bits) >> q->rb_bits;
  last = ((offset + length - 1) >> q->cluster_bits) >> q->rb_bits;
  for (i = first; i <= last; i++)
    if (i >= q->reftable_entries || reft_get (q, i) == 0)
      return false;
  return true;
}

/* ---- allocation --------------------------------------------------------- */

/* At most this much is counted ahead of file_end (or two clusters, if
 * larger): a regular file's length is at most 1.5 MiB ahead
 * (host_grow_file), but a block device's is its end. */
#define COUNT_AHEAD_MAX (2ULL << 20)

/* Counts the clusters between file_end (or what is counted already) and
 * the file's length, where refcount blocks cover them ("Counted ahead",
 * above).  Where they do not, allocations count their own clusters until
 * the structure has grown. */
static void
count_ahead (struct qcow2 *q)
{
  uint64_t from = MAX (q->counted_end, q->cow.file_end);
  uint64_t cap = MAX (COUNT_AHEAD_MAX, 2 * q->cluster_size), c;
  uint64_t to = MIN (q->cow.file_length,
                     q->cow.file_end + cap) & ~(q->cluster_size - 1);
  bool raised;

  if (q->lazy || q->h.version < 3 || q->cow.unsafe_one_sync || to <= from ||
      !qcow2_covered (q, from, to - from))
    return;
  for (c = from >> q->cluster_bits; c < to >> q->cluster_bits; c++) {
    if (store_count (q, c, 1, &raised) == -1)
      return;                   /* the rest is counted on use */
    q->counted_end = (c + 1) << q->cluster_bits;
  }
}

void
qcow2_uncount_ahead (struct qcow2 *q, uint64_t from)
{
  uint64_t c;
  bool raised;

  q->counts_durable_end = MIN (q->counts_durable_end, from);
  if (q->counted_end <= from)
    return;
  for (c = from >> q->cluster_bits; c < q->counted_end >> q->cluster_bits;
       c++)
    if (store_count (q, c, 0, &raised) == -1) {
      q->cow.leaked = true;     /* the dirty bit stays: check repairs it */
      break;
    }
  q->counted_end = from;
}

int64_t
qcow2_alloc_clusters (struct qcow2 *q, uint64_t n)
{
  uint64_t host = q->cow.file_end, c0 = host >> q->cluster_bits, i;
  uint64_t end = host + (n << q->cluster_bits);

  assert (qcow2_covered (q, host, n << q->cluster_bits));
  if (cow_grow_file (&q->cow, end) == -1)
    return -1;
  /* Past file_end nothing is referenced: the count is 1, whatever a
   * stale block may say (but what was counted ahead is 1 already). */
  for (i = 0; i < n; i++)
    if ((c0 + i) << q->cluster_bits >= q->counted_end &&
        qcow2_set_refcount (q, c0 + i, 1) == -1)
      return -1;
  if (end > q->counts_durable_end)
    q->counts_new = true;
  q->cow.file_end = end;
  count_ahead (q);
  return (int64_t) host;
}

int64_t
qcow2_reserve_clusters (struct qcow2 *q, uint64_t n)
{
  uint64_t bytes = n * q->cluster_size;

  while (!qcow2_covered (q, q->cow.file_end, bytes)) {
    int r;
    pthread_mutex_unlock (&q->cow.lock);
    r = qcow2_cover_wbl (q, bytes);
    pthread_mutex_lock (&q->cow.lock);
    if (r == -1)
      return -1;
  }
  return qcow2_alloc_clusters (q, n);
}

static int
cut_free_tail (struct qcow2 *q)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);
  uint64_t k = q->cow.file_end >> q->cluster_bits, v = 0, end;

  while (k > 1) {
    if (qcow2_get_refcount (q, k - 1, &v) == -1)
      return -1;
    if (v > 0)
      break;
    k--;
  }
  end = k << q->cluster_bits;
  if (end >= q->cow.file_length && end >= q->cow.file_end)
    return 0;
  if (ftruncate (q->img->fd, (off_t) end) == -1)
    return error_syscall (q->img, "truncating free clusters");
  q->cow.file_end = q->cow.file_length = end;
  q->counted_end = MIN (q->counted_end, end);
  q->counts_durable_end = MIN (q->counts_durable_end, end);
  qcow2_zfree_cut (q);
  overlap_cut (&q->cow.meta, end);
  return 0;
}

/* The file cut after its last referenced cluster, synced without
 * q->cow.lock. */
int
qcow2_truncate_free_tail (struct qcow2 *q)
{
  if (cut_free_tail (q) == -1)
    return -1;
  if (cow_sync (&q->cow) == -1)
    return error_syscall (q->img, "truncating free clusters");
  return 0;
}

/* ---- growing the refcount structure ------------------------------------- */

/* What a growth appends at A: nb blocks for the indices in idx[], then a
 * table of nt clusters (nt 0: the old table has room). */
struct growth {
  uint64_t a;
  uint64_t nb, nt;
  uint64_t *idx;                /* table indices of the new blocks */
  uint64_t table_entries;       /* of the new table */
};

static bool
index_uncovered (struct qcow2 *q, uint64_t i)
{
  return i >= q->reftable_entries || reft_get (q, i) == 0;
}

/* Counts (and, if g->idx, records) the uncovered indices of the byte
 * ranges [lo, lo + len) and [a, end). */
static uint64_t
uncovered (struct qcow2 *q, uint64_t lo, uint64_t len, uint64_t a,
           uint64_t end, uint64_t *idx)
{
  unsigned shift = q->cluster_bits + q->rb_bits;
  uint64_t n = 0, i, first, last, prev_last = 0;
  bool have_prev = false;

  if (len) {
    first = lo >> shift;
    last = (lo + len - 1) >> shift;
    for (i = first; i <= last; i++)
      if (index_uncovered (q, i)) {
        if (idx)
          idx[n] = i;
        n++;
      }
    prev_last = last;
    have_prev = true;
  }
  first = a >> shift;
  last = (end - 1) >> shift;
  for (i = first; i <= last; i++)
    if (index_uncovered (q, i) &&
        !(have_prev && i >= (lo >> shift) && i <= prev_last)) {
      if (idx)
        idx[n] = i;
      n++;
    }
  return n;
}

/* Plans a growth covering [lo, lo + len) and the area itself plus extra
 * bytes after it.  Called with q->cow.lock held. */
static int
plan_growth (struct qcow2 *q, uint64_t lo, uint64_t len, uint64_t extra,
             struct growth *g)
{
  uint64_t cs = q->cluster_size, i;

  g->a = q->cow.file_end;
  g->nb = g->nt = 0;
  for (i = 0; i < 64; i++) {
    uint64_t end = g->a + (g->nb + g->nt) * cs + MAX (extra, (uint64_t) 1);
    uint64_t need = MAX (lo + len, end);
    uint64_t last = ((need - 1) >> q->cluster_bits) >> q->rb_bits;
    uint64_t nb = uncovered (q, lo, len, g->a, end, NULL), nt = 0;
    if (last >= q->reftable_entries) {
      uint64_t entries = MAX (last + 1, 2 * q->reftable_entries);
      nt = DIV_ROUND_UP (entries * 8, cs);
      if (nt * cs > QCOW2_MAX_REFTABLE_BYTES)
        return error_file (q->img, EFBIG, "the refcount table would grow "
                           "past 8 MiB: the image is too large for its "
                           "cluster size");
      g->table_entries = nt * cs / 8;
    }
    if (nb == g->nb && nt == g->nt) {
      g->idx = calloc (nb ? nb : 1, sizeof *g->idx);
      if (g->idx == NULL)
        return error_file (q->img, ENOMEM, "out of memory");
      uncovered (q, lo, len, g->a, end, g->idx);
      return 0;
    }
    g->nb = nb;
    g->nt = nt;
  }
  return error_file (q->img, EIO, "could not size a refcount table growth");
}

/* The index of the new block (0..nb-1) holding table index ti, or -1. */
static int64_t
new_block_of (const struct growth *g, uint64_t ti)
{
  uint64_t k;

  for (k = 0; k < g->nb; k++)
    if (g->idx[k] == ti)
      return (int64_t) k;
  return -1;
}

/* Counts the area's clusters: in the new blocks' buffers, or in existing
 * blocks through the cache.  Called with q->cow.lock held. */
static int
count_area (struct qcow2 *q, const struct growth *g, uint8_t *blocks)
{
  uint64_t cs = q->cluster_size, k, n = g->nb + g->nt;
  uint64_t mask = (1ULL << q->rb_bits) - 1;

  for (k = 0; k < n; k++) {
    uint64_t c = (g->a >> q->cluster_bits) + k, start, len;
    int64_t b = new_block_of (g, c >> q->rb_bits);
    if (b >= 0)
      rb_store (q, blocks + (uint64_t) b * cs, c & mask, 1, &start, &len);
    else if (qcow2_set_refcount (q, c, 1) == -1)
      return -1;
  }
  overlap_add (&q->cow.meta, g->a, n * cs, "refcount structure");
  return 0;
}

/* Writes the area: new blocks, new table (if any). */
static int
write_area (struct qcow2 *q, const struct growth *g, const uint8_t *blocks,
            const uint8_t *table)
{
  uint64_t cs = q->cluster_size;

  if (g->nb && source_pwrite (q->img->src, blocks, g->nb * cs, g->a) == -1)
    return error_file (q->img, errno, "writing refcount blocks at 0x%"
                       PRIx64 ": %s", g->a, strerror (errno));
  if (g->nt && source_pwrite (q->img->src, table, g->nt * cs,
                            g->a + g->nb * cs) == -1)
    return error_file (q->img, errno, "writing a refcount table at 0x%"
                       PRIx64 ": %s", g->a + g->nb * cs, strerror (errno));
  return 0;
}

/* Without lazy refcounts, writes the refcount blocks' dirty pages; then
 * syncs.  Called with writeback_lock held, q->cow.lock not held. */
static int
write_refblocks_and_sync (struct qcow2 *q)
{
  if (!q->lazy && qcow2_write_refblocks (q) == -1)
    return -1;
  return cow_fdatasync (&q->cow);
}

/* Points the refcount structure at the area: new table entries, or a new
 * table in the header.  Called with writeback_lock held. */
static int
link_area (struct qcow2 *q, const struct growth *g, uint8_t *table,
           const uint8_t *blocks)
{
  uint64_t cs = q->cluster_size, k;
  int r = 0;

  if (g->nt) {
    uint64_t old_off = q->h.refcount_table_offset;
    uint64_t old_bytes = q->reftable_entries * 8;
    uint32_t old_clusters = q->h.refcount_table_clusters;
    struct mc_table nt = { 0 };

    if (mc_table_init (&nt, g->a + g->nb * cs, g->nt * cs) == -1)
      return error_file (q->img, ENOMEM, "out of memory");
    memcpy (nt.data, table, g->nt * cs);
    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->header_lock);
      q->h.refcount_table_offset = nt.offset;
      q->h.refcount_table_clusters = (uint32_t) g->nt;
      r = qcow2_write_header_fields (q, 48, 12);
      if (r == -1) {
        q->h.refcount_table_offset = old_off;
        q->h.refcount_table_clusters = old_clusters;
      }
    }
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);
    if (r == -1) {
      mc_table_release (&nt);
      cow_set_broken (&q->cow);
      return -1;
    }
    mc_table_release (&q->reftable);
    q->reftable = nt;
    q->reftable_entries = g->table_entries;
    r = qcow2_drop_ref (q, old_off, old_bytes, true);
  }
  else {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);
    for (k = 0; k < g->nb; k++) {
      be64_store (q->reftable.data + g->idx[k] * 8, g->a + k * cs);
      mc_table_mark (&q->reftable, g->idx[k] * 8, 8);
    }
    r = cow_write_table_pages (&q->cow, &q->reftable);
    if (r == -1) {
      cow_set_broken (&q->cow);
    }
  }
  /* The new blocks are known: cache them, clean. */
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);
  for (k = 0; r == 0 && k < g->nb; k++) {
    struct mc_entry *e = mc_find (q->rb_cache, g->a + k * cs);
    if (e == NULL && (e = mc_insert (q->rb_cache, g->a + k * cs)) != NULL)
      memcpy (e->t.data, blocks + k * cs, cs);
  }
  return r;
}

/* Builds the new table: the old entries and the new blocks. */
static void
fill_table (struct qcow2 *q, const struct growth *g, uint8_t *table)
{
  uint64_t k;

  memcpy (table, q->reftable.data, q->reftable_entries * 8);
  for (k = 0; k < g->nb; k++)
    be64_store (table + g->idx[k] * 8, g->a + k * q->cluster_size);
}

/* One growth: covers [lo, lo + len) and [file_end, file_end + extra)
 * (after the area).  Called with writeback_lock held, q->cow.lock not held. */
static int
grow (struct qcow2 *q, uint64_t lo, uint64_t len, uint64_t extra)
{
  struct growth g = { 0 };
  CLEANUP_FREE uint8_t *blocks = NULL;
  CLEANUP_FREE uint8_t *table = NULL;
  uint64_t cs = q->cluster_size;
  int r;

  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);
    if (qcow2_covered (q, lo, len) &&
        qcow2_covered (q, q->cow.file_end, extra))
      return 0;
    if (plan_growth (q, lo, len, extra, &g) == -1)
      return -1;
    blocks = calloc (g.nb ? g.nb : 1, cs);
    table = calloc (g.nt ? g.nt : 1, cs);
    if (blocks == NULL || table == NULL) {
      free (g.idx);
      return error_file (q->img, ENOMEM, "out of memory");
    }
    r = cow_grow_file (&q->cow, g.a + (g.nb + g.nt) * cs);
    if (r == 0) {
      q->cow.file_end = g.a + (g.nb + g.nt) * cs;
      r = count_area (q, &g, blocks);
    }
    if (r == 0 && g.nt)
      fill_table (q, &g, table);
  }
  if (r == 0)
    r = write_area (q, &g, blocks, table);
  /* The area and its counts are durable before anything points to it. */
  if (r == 0)
    r = write_refblocks_and_sync (q);
  if (r == 0)
    r = link_area (q, &g, table, blocks);
  free (g.idx);
  return r;
}

int
qcow2_cover_wbl (struct qcow2 *q, uint64_t extra)
{
  return grow (q, 0, 0, extra);
}

int
qcow2_cover (struct qcow2 *q, uint64_t extra)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.writeback_lock);
  return qcow2_cover_wbl (q, extra);
}

int
qcow2_cover_range_wbl (struct qcow2 *q, uint64_t offset, uint64_t length)
{
  return grow (q, offset, length, 0);
}
