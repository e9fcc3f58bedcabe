/* SPDX-License-Identifier: BSD-3-Clause */
/* QED's part of the I/O paths: what cow.c asks of the format (runs of
 * table entries, readiness for a change, allocation at the end of the
 * file, linking new clusters), and write zeroes and trim.
 *
 * Reads, writes (in place, or allocating with copy on write) and block
 * status are cow.c's, shared with qcow2.  For QED every data cluster may
 * be written in place: there are no snapshots and no compression.
 *
 * New clusters go at file_end.  The file is grown past them beforehand
 * (host_grow_file, in steps; a clean close cuts it back to file_end), so
 * that they lie inside it and read as zeros where cow.c leaves a hole -
 * qemu rounds a QED file's size down to a cluster and refuses entries
 * past it.
 *
 * A zero cluster (entry 1) is only made for whole clusters that read
 * through to a backing image; allocated clusters are zeroed and trimmed
 * in place (hole punching), so no cluster ever loses its last reference
 * and no freed cluster is handed out again.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "minmax.h"
#include "qed.h"
#include "rounding.h"

/* ---- runs --------------------------------------------------------------- */

/* How many of the want entries from r's first continue its run. */
static uint64_t
run_length (struct qed *q, const struct cow_run *r, uint64_t want)
{
  uint64_t n = 1, e0 = r->entry;

  if (r->kind == COW_INVALID)
    return 1;
  for (; n < want; n++) {
    uint64_t en = qed_l2_get (r->l2, r->l2_index + n);
    if ((enum cow_kind) qed_entry_kind (q, en, q->cow.file_end) != r->kind)
      break;
    if (r->kind == COW_DATA && en != e0 + n * q->cluster_size)
      break;
  }
  return n;
}

static int
qed_lookup (void *fmt, uint64_t offset, uint64_t count, bool cached_only,
            struct cow_run *r)
{
  struct qed *q = fmt;
  uint64_t cs = q->cluster_size, in_cluster = offset & (cs - 1), n = 1;
  uint64_t want = cow_run_start (&q->cow, offset, count, r), l2_offset;

  l2_offset = cow_l1_get (&q->cow, r->l1_index);
  r->entry = l2_offset;
  if (l2_offset == 0) {
    r->kind = COW_UNALLOC;
    n = want;
  }
  else if (!qed_table_offset_valid (q, l2_offset, q->cow.file_end)) {
    r->kind = COW_INVALID;
    r->bad_table = true;
  }
  else {
    if (cow_lookup_l2 (&q->cow, l2_offset, cached_only, r) == -1)
      return -1;
    r->entry = qed_l2_get (r->l2, r->l2_index);
    r->kind = (enum cow_kind) qed_entry_kind (q, r->entry, q->cow.file_end);
    n = run_length (q, r, want);
    if (r->kind == COW_DATA) {
      r->host = r->entry + in_cluster;
      r->in_place = true;
    }
  }
  r->len = MIN (count, n * cs - in_cluster);
  return 0;
}

static int
qed_invalid (void *fmt, const struct cow_run *r, uint64_t offset)
{
  struct qed *q = fmt;

  return error_file (q->img, EIO, "%s at 0x%" PRIx64 " (for offset %"
                     PRIu64 ") is invalid: run cowbd-img check -r all",
                     r->bad_table ? "L2 table" : "cluster entry",
                     r->entry, offset);
}

/* ---- readiness for a change --------------------------------------------- */

enum { NEED_L2 = COW_NEED, NEED_CHECK_BIT };

static int
qed_check_ready (void *fmt, const struct cow_run *r, uint64_t alloc_bytes)
{
  struct qed *q = fmt;

  if (r->l2 == NULL)
    return NEED_L2;
  if (mc_make_dense (q->cow.l2_cache, r->l2) == -1)
    return error_file (q->img, ENOMEM, "out of memory for an L2 table");
  if (q->creating_table)
    return COW_WAIT;
  if (!__atomic_load_n (&q->cow.marked, __ATOMIC_ACQUIRE))
    return NEED_CHECK_BIT;
  return 0;
}

static int
qed_make_ready (void *fmt, int need, const struct cow_run *r,
                uint64_t alloc_bytes)
{
  if (need == NEED_L2)
    return qed_create_l2 (fmt, r->l1_index);
  return qed_set_need_check (fmt, true);
}

/* ---- allocation --------------------------------------------------------- */

static int64_t
qed_reserve (void *fmt, uint64_t n)
{
  struct qed *q = fmt;

  return cow_append (&q->cow, n << q->cluster_bits);
}

static int
qed_link (void *fmt, const struct cow_run *r, uint64_t n, uint64_t host)
{
  struct qed *q = fmt;
  uint64_t i;

  for (i = 0; i < n; i++)
    qed_l2_set (r->l2, r->l2_index + i, host + i * q->cluster_size);
  return 0;
}

/* A failed allocation may have written part of its clusters: the space
 * goes back only by truncating the file (new clusters must read as
 * zeros); otherwise it stays a leak for the next open's check. */
static void
qed_give_back (void *fmt, uint64_t host, uint64_t n)
{
  struct qed *q = fmt;

  if (!cow_cut_back (&q->cow, host, host + n * q->cluster_size))
    q->cow.leaked = true;
}

static bool
qed_over_budget (void *fmt)
{
  struct qed *q = fmt;

  return mc_over_budget (q->cow.l2_cache);
}

static int
qed_writeback_op (void *fmt)
{
  return qed_writeback (fmt);
}

/* Part of a cluster needs a copy on write only where it reads through
 * to backing data; whole clusters become zero clusters. */
static bool
qed_zero_partial_fast (void *fmt, const struct cow_run *r, uint64_t len,
                       uint64_t offset)
{
  struct qed *q = fmt;

  return r->kind != COW_UNALLOC || chain_backing_is_zero (q->img, offset, len);
}

static bool
qed_zero_whole_fast (void *fmt, const struct cow_run *r, uint64_t len,
                     uint64_t offset)
{
  return true;
}

const struct cow_ops qed_cow_ops = { COW_OPS_STANDARD (qed) };

/* ---- write zeroes ------------------------------------------------------- */

/* Writes zeros into part of a cluster that reads from the backing image:
 * an allocating write of zeros, unless the backing image reads as zeros
 * there already. */
static int
zero_partial (struct qed *q, uint64_t len, uint64_t offset, unsigned flags)
{
  if (chain_backing_is_zero (q->img, offset, len))
    return 0;
  return cow_zero_by_write (&q->cow, len, offset, flags, "part of a cluster "
                            "over backing data needs a copy on write");
}

/* Makes n clusters of r zero clusters, if they still read through. */
static int
set_zero_clusters (void *fmt, const struct cow_run *r, uint64_t n,
                   void *unused)
{
  uint64_t i;

  if (r->kind != COW_UNALLOC)
    return 1;
  for (i = 0; i < n; i++)
    qed_l2_set (r->l2, r->l2_index + i, QED_ZERO_CLUSTER);
  return 0;
}

/* cow_run_fn: zeros the run r at offset. */
static int
zero_run (struct cow *c, const struct cow_run *r, uint64_t offset,
          unsigned flags, uint64_t *done)
{
  struct qed *q = (struct qed *) c;
  struct image *b = q->img->backing;
  uint64_t part;

  *done = r->len;
  switch (r->kind) {
  case COW_DATA:
    return cow_zero_in_place (&q->cow, r->host, r->len, flags);
  case COW_UNALLOC:
    if (b == NULL || offset >= b->size)
      return 0;                         /* reads as zeros already */
    part = cow_partial_len (c, r, offset);
    if (part) {
      *done = part;
      return zero_partial (q, part, offset, flags);
    }
    return cow_change (&q->cow, offset,
                       ROUND_DOWN (r->len, q->cluster_size),
                       set_zero_clusters, NULL, done);
  case COW_INVALID:
    return qed_invalid (q, r, offset);
  default:
    return 0;
  }
}

int
qed_zero (struct image *img, uint64_t count, uint64_t offset,
          unsigned flags)
{
  return cow_zero (img->priv, count, offset, flags, zero_run);
}

/* ---- trim --------------------------------------------------------------- */

/* cow_run_fn: space goes back to the host; the cluster stays mapped, so
 * nothing is leaked and nothing freed can be reused. */
static int
trim_run (struct cow *c, const struct cow_run *r, uint64_t offset,
          unsigned flags, uint64_t *done)
{
  if (r->kind != COW_DATA)
    return 0;
  return cow_punch (c, r->host, r->len);
}

int
qed_trim (struct image *img, uint64_t count, uint64_t offset,
          unsigned flags)
{
  return cow_trim (img->priv, count, offset, flags, trim_run);
}
