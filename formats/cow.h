/* SPDX-License-Identifier: BSD-3-Clause */
/* The I/O paths both cluster formats share (cow.c): reads, the
 * copy-on-write write path, zeroing in place, block status.  Not for use
 * outside formats/.
 *
 * A cluster format (qed.c, qcow2*.c) puts a struct cow first in its state
 * (img->priv points at both) and answers a few questions through struct
 * cow_ops: what a run of guest clusters is (lookup), whether the metadata
 * is ready for a change (check_ready / make_ready), where new clusters go
 * (reserve), and how table entries point at them (link).  Everything
 * else - walking a request as runs, waiting for allocations in flight,
 * filling the rest of new clusters from the backing chain, giving the
 * lock back - is written once, here.
 *
 * Locks: *c->lock is the format's main lock (q->lock).  Every function of
 * cow.c that takes it releases it before it returns.  The ops are called
 * with it held, except make_ready and writeback, which are called without
 * it and may take it themselves.  No fdatasync runs with it held.
 */
#ifndef COWBD_FORMATS_COW_H
#define COWBD_FORMATS_COW_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"
#include "overlap.h"

struct mc_entry;

/* The state of a run of guest clusters. */
enum cow_kind {
  COW_UNALLOC,                  /* reads through to the backing image */
  COW_ZERO,                     /* allocated, reads as zeros */
  COW_DATA,                     /* a host cluster run */
  COW_COMPRESSED,               /* qcow2: one compressed cluster */
  COW_INVALID,                  /* corrupt entry or table */
};

/* The host offset bits of a table entry, in both formats (QED entries
 * are plain offsets; qcow2 keeps flags outside these bits). */
#define COW_ENTRY_OFFSET_MASK 0x00fffffffffffe00ULL

/* One run, as lookup describes it: consecutive clusters of one L2 table
 * in the same state (and, for data, contiguous in the file). */
struct cow_run {
  enum cow_kind kind;
  uint64_t len;                 /* bytes from the request's offset */
  uint64_t host;                /* COW_DATA: file offset of that byte */
  uint64_t entry;               /* the first cluster's entry, for errors */
  bool in_place;                /* COW_DATA that may be written in place */
  struct mc_entry *l2;          /* NULL: no L2 table (or a bad one) */
  bool l2_shared;               /* qcow2: the L1 entry lacks COPIED */
  uint64_t l1_index, l2_index;  /* of the first cluster */
  const char *why;              /* COW_INVALID: what is wrong, or NULL */
  bool bad_table;               /* COW_INVALID: the L1 entry is bad */
};

/* What check_ready answers besides 0 (ready) and -1 (error, set). */
#define COW_WAIT 1              /* wait on *c->cond, then look again */
/* Values >= COW_NEED are the format's own: make_ready does the work. */
#define COW_NEED 2

struct cow_ops {
  /* Describes the run at offset, at most count bytes (> 0).  Lock held;
   * a table missing from the cache is read under it, or with cached_only
   * the call fails with EAGAIN. */
  int (*lookup) (void *fmt, uint64_t offset, uint64_t count,
                 bool cached_only, struct cow_run *r);
  /* The error for a COW_INVALID run at offset; returns -1. */
  int (*invalid) (void *fmt, const struct cow_run *r, uint64_t offset);
  /* Whether the entries of r may change now, and (alloc_bytes > 0) that
   * many new bytes be allocated: 0, -1, COW_WAIT or a need >= COW_NEED.
   * Lock held. */
  int (*check_ready) (void *fmt, const struct cow_run *r,
                      uint64_t alloc_bytes);
  /* Does what check_ready asked for.  Called without the lock. */
  int (*make_ready) (void *fmt, int need, const struct cow_run *r,
                     uint64_t alloc_bytes);
  /* Reserves n clusters at the end of the file: their host offset, or
   * -1.  Lock held. */
  int64_t (*reserve) (void *fmt, uint64_t n);
  /* Points the n entries of r at new clusters at host.  Lock held. */
  int (*link) (void *fmt, const struct cow_run *r, uint64_t n,
               uint64_t host);
  /* A failed allocation's clusters at host: give them back if the format
   * can, else remember the leak.  Lock held. */
  void (*give_back) (void *fmt, uint64_t host, uint64_t n);
  /* Optional (qcow2): decompresses the cluster of entry into out. */
  int (*read_compressed) (void *fmt, uint64_t entry, uint8_t *out);
  /* Optional (qcow2), for cow_write_compressed: reserves len bytes (less
   * than a cluster) for compressed data, counting every host cluster
   * they touch (*host: where); points the entry of r at them; gives them
   * back after a failed write.  Lock held. */
  int (*zreserve) (void *fmt, uint64_t len, uint64_t *host);
  int (*zlink) (void *fmt, const struct cow_run *r, uint64_t host,
                uint64_t len);
  void (*zgive_back) (void *fmt, uint64_t host, uint64_t len);
  /* Whether a cache grew past its bound.  Lock held. */
  bool (*over_budget) (void *fmt);
  /* Writes back every dirty table (flush without the final sync is not
   * enough: this is the whole writeback).  Called without the lock. */
  int (*writeback) (void *fmt);
  /* Optional: block status finds holes under data clusters itself
   * (drv_status.host_checked).  Lock held. */
  bool (*host_checked) (void *fmt);
  /* For a fast zero (IMAGE_FAST_ZERO), before anything changes: whether
   * zeroing [offset, offset + len) of run r needs no copy on write, for
   * part of one cluster (zero_partial_fast) or whole clusters
   * (zero_whole_fast).  Called without the lock. */
  bool (*zero_partial_fast) (void *fmt, const struct cow_run *r,
                             uint64_t len, uint64_t offset);
  bool (*zero_whole_fast) (void *fmt, const struct cow_run *r,
                           uint64_t len, uint64_t offset);
  /* Optional: records durably that the image is corrupt (qcow2's corrupt
   * bit), once a write was refused for landing on metadata.  Called
   * without the lock, at most once. */
  void (*mark_corrupt) (void *fmt);
};

/* The shared part of a cluster format's state; the first member of it. */
struct cow {
  struct image *img;
  const struct cow_ops *ops;
  unsigned cluster_bits;
  unsigned table_bits;          /* log2 (entries of an L2 table) */
  pthread_mutex_t *lock;        /* the format's main lock */
  pthread_cond_t *cond;         /* signalled when a change ends */
  pthread_mutex_t *writeback_lock; /* the format's: one writeback or
                                      structural change at a time */
  pthread_mutex_t *header_lock; /* the format's: header writes */
  struct inflight **allocs;     /* changes in flight, under *lock */
  /* Where the metadata lies (overlap.h), under *lock: the format adds
   * its tables at open and when it allocates one. */
  struct overlap_set meta;
  /* A write was refused for landing on metadata: every later write is
   * refused.  __atomic. */
  bool corrupt;
  bool corrupt_marked;          /* mark_corrupt called; __atomic */
  /* The flush's crash ordering (cow.c, "One sync or two"): a table
   * change since the last writeback took its snapshot needs the data
   * synced before the tables are written (order_pending, __atomic); the
   * img->length_changes that the last successful writeback's sync made
   * durable (synced_lengths, under *lock). */
  bool order_pending;
  uint64_t synced_lengths;
  /* COWBD_TEST_UNSAFE_ONE_SYNC=1 in the environment: a fill from the
   * backing chain no longer orders the flush.  Breaks rule 1 on purpose,
   * for the power-loss test's negative control only. */
  bool unsafe_one_sync;
};

/* The format's main lock.  In debug builds (no NDEBUG) an error-checking
 * mutex, so that cow_assert_not_held can tell who holds it. */
void cow_mutex_init (pthread_mutex_t *m);
/* cow_assert_not_held (declared in internal.h) runs before every
 * fdatasync of an image's file (host_sync_image): none runs under the
 * main lock, where it would stall every reader and writer of the image. */

/* Refuses (EIO, one warning, the image marked corrupt) a write to the
 * host range [host, host + len), taken from a table entry, that lands on
 * metadata.  Called with the lock held; cow_end_corrupt, called after
 * releasing it, has the format record the corruption. */
int cow_check_target (struct cow *c, uint64_t host, uint64_t len,
                      uint64_t offset);
/* Returns -1 (keeping the error): for a failure of a write path, after
 * the lock is released. */
int cow_end_corrupt (struct cow *c);
/* Both, for a change in place (zero, punch) of [host, host + len) from a
 * table entry: takes and releases the lock; 0 or -1. */
int cow_target_ok (struct cow *c, uint64_t host, uint64_t len);

/* host_sync of the image's file, asserting the main lock is not held. */
int cow_sync (struct cow *c);

/* A guest offset's cluster, and a guest cluster's L1 and L2 index: the
 * same split in both formats, once the format has set cluster_bits and
 * table_bits from its header. */
static inline uint64_t
cow_cluster_of (const struct cow *c, uint64_t offset)
{
  return offset >> c->cluster_bits;
}

static inline uint64_t
cow_l1_index (const struct cow *c, uint64_t cluster)
{
  return cluster >> c->table_bits;
}

static inline uint64_t
cow_l2_index (const struct cow *c, uint64_t cluster)
{
  return cluster & ((1ULL << c->table_bits) - 1);
}

/* The start of every lookup: clears *r, sets its L1 and L2 index for
 * offset and returns how many clusters [offset, offset + count) touches
 * within that L2 table. */
static inline uint64_t
cow_run_start (const struct cow *c, uint64_t offset, uint64_t count,
               struct cow_run *r)
{
  uint64_t cl = cow_cluster_of (c, offset), cs = 1ULL << c->cluster_bits;
  uint64_t in_cluster = offset & (cs - 1);
  uint64_t left = (1ULL << c->table_bits) - cow_l2_index (c, cl);
  uint64_t touched = (in_cluster + count + cs - 1) >> c->cluster_bits;

  memset (r, 0, sizeof *r);
  r->l1_index = cow_l1_index (c, cl);
  r->l2_index = cow_l2_index (c, cl);
  return touched < left ? touched : left;
}

/* Sets a 64-bit header field to value and has write_header (fmt) make
 * the header durable, under *c->header_lock; on failure the field is as
 * it was. */
int cow_set_header_field (struct cow *c, uint64_t *field, uint64_t value,
                          int (*write_header) (void *fmt));
/* Sets (on) or clears the format's "may be inconsistent" mark (QED's
 * NEED_CHECK, qcow2's dirty bit) under *c->header_lock: *on_disk is
 * what the header on disk says (read elsewhere with __atomic).  The bit
 * is changed in *features and write_header (fmt) makes the header
 * durable; on failure *features is as it was.  features NULL: the
 * format has no such bit (qcow2 version 2), only *on_disk changes. */
int cow_set_mark (struct cow *c, bool *on_disk, bool on, uint64_t *features,
                  uint64_t bit, int (*write_header) (void *fmt));
/* The end of a read-write close or an emptying: the file cut back to
 * end where it was grown past it (under the lock), then synced (without
 * it). */
int cow_cut_and_sync (struct cow *c, uint64_t *length, uint64_t end);
/* Adds a metadata cache's figures to st. */
struct metacache;
void cow_add_cache_stats (const struct metacache *mc,
                          struct image_stats *st);
/* The writeback's choice between one sync and two (cow.c, "One sync or
 * two").  cow_flush_begin, called with the lock held where the writeback
 * snapshots its dirty tables: true if the data must be synced before the
 * tables are written; it clears the pending order and keeps in *lengths
 * what the writeback's sync will make durable.  cow_flush_end, with the
 * lock held after the writeback, r its result: on success, the file's
 * length as of the snapshot is durable; on failure the order is pending
 * again.  cow_order_tables (any lock or none): the next writeback syncs
 * before it writes a table (new data held more than zeros, or a table
 * page such as the L1 table was written outside the writeback). */
bool cow_flush_begin (struct cow *c, uint64_t *lengths);
void cow_flush_end (struct cow *c, uint64_t lengths, bool ordered, int r);
void cow_order_tables (struct cow *c);

/* Sets c up and initialises the format's locks (cluster_bits is set
 * once the header is read); cow_destroy destroys them. */
void cow_init (struct cow *c, struct image *img, const struct cow_ops *ops,
               pthread_mutex_t *lock, pthread_cond_t *cond,
               pthread_mutex_t *writeback_lock, pthread_mutex_t *header_lock,
               struct inflight **allocs);
void cow_destroy (struct cow *c);
/* The automatic check of a read-write open of an image marked as needing
 * one: repairs what can be repaired, or fails saying what is left. */
int cow_repair_at_open (struct cow *c);

/* The driver calls of a cluster format (img->priv starts with a struct
 * cow). */
int cow_pread (struct image *img, void *buf, size_t count, uint64_t offset);
int cow_pread_nowait (struct image *img, void *buf, size_t count,
                      uint64_t offset);
int cow_pwrite (struct image *img, const void *buf, size_t count,
                uint64_t offset, unsigned flags);
int cow_pwrite_nowait (struct image *img, const void *buf, size_t count,
                       uint64_t offset, unsigned flags);
int cow_block_status (struct image *img, uint64_t offset, uint64_t count,
                      struct drv_status *st);

/* For the formats' zero and trim paths. */

/* Looks up the run at offset, taking and releasing the lock. */
int cow_lookup (struct cow *c, uint64_t offset, uint64_t count,
                struct cow_run *r);
/* Walks [offset, offset + count) run by run: looks each run up (taking
 * and releasing the lock), then calls fn without the lock, which handles
 * *done bytes from offset (all of r->len, or less: the rest is looked up
 * again).  Stops at the first failure. */
typedef int (*cow_run_fn) (struct cow *c, const struct cow_run *r,
                           uint64_t offset, unsigned flags, uint64_t *done);
int cow_walk (struct cow *c, uint64_t count, uint64_t offset,
              unsigned flags, cow_run_fn fn);
/* The driver's zero and trim, given what the format does with one run:
 * zero and trim change a run.  With IMAGE_FAST_ZERO, cow_zero first
 * checks (through the ops' zero_*_fast) that no run needs a copy on
 * write. */
int cow_zero (struct cow *c, uint64_t count, uint64_t offset,
              unsigned flags, cow_run_fn zero);
int cow_trim (struct cow *c, uint64_t count, uint64_t offset,
              unsigned flags, cow_run_fn trim);
/* Writes without FUA and without the writeback at the end (for zeros
 * written through the allocating path). */
int cow_write_zeros (struct cow *c, uint64_t len, uint64_t offset);
/* Zeros an allocated range of our own in place: a hole where the flags
 * allow, else zeros written by fallocate (or, unless fast, by writes). */
int cow_zero_in_place (struct cow *c, uint64_t host, uint64_t len,
                       unsigned flags);
/* Gives back the host space of [host, host + len), an allocated range of
 * our own (trim): refused on metadata; no error where the filesystem
 * cannot punch. */
int cow_punch (struct cow *c, uint64_t host, uint64_t len);
/* The bytes at the start of run r at offset that are part of a cluster
 * (the head up to a cluster boundary, or a short tail), or 0: zero and
 * trim handle those apart from whole clusters. */
uint64_t cow_partial_len (const struct cow *c, const struct cow_run *r,
                          uint64_t offset);
/* Zeros that only an allocating write of zeros can give: refused with
 * ENOTSUP (saying why) under IMAGE_FAST_ZERO, else cow_write_zeros. */
int cow_zero_by_write (struct cow *c, uint64_t len, uint64_t offset,
                       unsigned flags, const char *why);
/* The error of every change once a metadata write failed (the format's
 * broken flag): EIO, asking for a check; returns -1. */
int cow_broken_error (struct cow *c);
/* Changes the entries of the whole clusters [offset, offset + len) once
 * they are ready (as for an allocating write, without allocation):
 * set (fmt, r, n, arg) runs with the lock held on the run r as it is
 * then, n clusters, and returns 0, -1, or 1 when r is no longer what the
 * caller meant (nothing done).  *done: bytes changed (0: look again). */
typedef int (*cow_set_fn) (void *fmt, const struct cow_run *r, uint64_t n,
                           void *arg);
int cow_change (struct cow *c, uint64_t offset, uint64_t len,
                cow_set_fn set, void *arg, uint64_t *done);
/* Writes the len compressed bytes z of the cluster at offset (aligned)
 * into new space and points its entry at them: the allocating path of a
 * write, with zreserve and zlink in place of reserve and link.  Only an
 * unallocated cluster (or a zero one without a host cluster) is taken;
 * anything else is EIO. */
int cow_write_compressed (struct cow *c, const void *z, uint64_t len,
                          uint64_t offset);
/* After a write or zero: writes back if FUA asks for it or a cache grew
 * past its bound. */
int cow_finish_write (struct cow *c, unsigned flags);

#endif /* COWBD_FORMATS_COW_H */
