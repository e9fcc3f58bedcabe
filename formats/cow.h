/* SPDX-License-Identifier: BSD-3-Clause */
/* What both cluster formats share: their common state (struct cow), the
 * I/O paths (cow.c: reads, the copy-on-write write path, zeroing in
 * place, block status), and open, close, the check's start, L2 table
 * loads and the writeback's steps (cow-table.c).  Not for use outside
 * formats/.
 *
 * A cluster format (qed.c, qcow2*.c) puts a struct cow first in its state
 * (img->priv points at both) and answers a few questions through struct
 * cow_ops: what a run of guest clusters is (lookup), whether the metadata
 * is ready for a change (check_ready / make_ready), where new clusters go
 * (reserve), and how table entries point at them (link); and it reads
 * its header and tables at open, writes everything back and sets its
 * mark.  Everything else - walking a request as runs, waiting for
 * allocations in flight, filling the rest of new clusters from the
 * backing chain, giving the lock back, the order of open and close - is
 * written once, here.
 *
 * Locks: c->lock is the format's main lock.  Every function of cow.c and
 * cow-table.c that takes it releases it before it returns.  The ops are
 * called with it held, except make_ready, writeback and the open and
 * close hooks, which are called without it and may take it themselves.
 * No fdatasync runs with it held.
 */
#ifndef COWBD_FORMATS_COW_H
#define COWBD_FORMATS_COW_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "byte-swapping.h"
#include "internal.h"
#include "metacache.h"
#include "overlap.h"

struct mc_entry;
struct mc_snapshot;
struct cow;
struct cow_check;

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
  bool l2_loaded;               /* this lookup read l2 from the file */
  bool l2_shared;               /* qcow2: the L1 entry lacks COPIED */
  uint64_t l1_index, l2_index;  /* of the first cluster */
  const char *why;              /* COW_INVALID: what is wrong, or NULL */
  bool bad_table;               /* COW_INVALID: the L1 entry is bad */
};

/* What check_ready answers besides 0 (ready) and -1 (error, set). */
#define COW_WAIT 1              /* wait on c->cond, then look again */
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
   * Lock held; not called once the image is broken. */
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

  /* Open and close (cow-table.c), all called without the lock.  open
   * reads the header and tables of a file of file_size bytes, calls
   * cow_open_state, and (read-write) repairs the image if it needs it;
   * release frees the format's state (also after a failed open);
   * write_back_all writes back everything, refcounts and dropped
   * references included; set_mark sets (on) or clears the format's "may
   * be inconsistent" mark durably; check runs the format's check of
   * what is on disk. */
  int (*open) (void *fmt, const struct image_open_opts *opts,
               uint64_t file_size);
  void (*release) (void *fmt);
  int (*write_back_all) (void *fmt);
  int (*set_mark) (void *fmt, bool on);
  int (*check) (void *fmt, struct cow_check *chk);
};

/* The hooks every cluster format has, named after its prefix p
 * (p_lookup, p_invalid, ..., p_check): a format's struct cow_ops starts
 * with COW_OPS_STANDARD (p), then names its optional hooks. */
#define COW_OPS_STANDARD(p)                                             \
  .lookup = p##_lookup, .invalid = p##_invalid,                         \
  .check_ready = p##_check_ready, .make_ready = p##_make_ready,         \
  .reserve = p##_reserve, .link = p##_link, .give_back = p##_give_back, \
  .over_budget = p##_over_budget, .writeback = p##_writeback_op,        \
  .zero_partial_fast = p##_zero_partial_fast,                           \
  .zero_whole_fast = p##_zero_whole_fast,                               \
  .open = p##_open_op, .release = p##_release,                          \
  .write_back_all = p##_write_back_all, .set_mark = p##_set_mark,       \
  .check = p##_check_op

/* The driver calls every cluster format has: the ones cow.c and
 * cow-table.c answer, and the format's own named after its prefix p
 * (p_probe, p_open, ...).  A format's struct driver starts with
 * COW_DRIVER (p), then names its optional calls. */
#define COW_DRIVER(p)                                                   \
  .name = #p, .probe = p##_probe, .open = p##_open,                     \
  .close = cow_close, .check = cow_check,                               \
  .pread = cow_pread, .pwrite = cow_pwrite,                             \
  .pread_nowait = cow_pread_nowait, .pwrite_nowait = cow_pwrite_nowait, \
  .block_status = cow_block_status,                                     \
  .zero = p##_zero, .trim = p##_trim, .flush = p##_flush,               \
  .get_info = p##_get_info, .cache_stats = p##_cache_stats,             \
  .create = p##_create, .create_options = p##_create_options,           \
  .set_backing = p##_set_backing,                                       \
  .make_empty = p##_make_empty, .resize = p##_resize

/* What a check is asked for, and the file's length when it starts. */
struct cow_check {
  unsigned flags;
  struct image_check_result *res;
  image_report_fn report;
  void *opaque;
  uint64_t file_size;
};
/* A corruption the check found: true if it is to be fixed (fixable and
 * REPAIR_ERRORS asked for; counted as fixed), else counted as left. */
bool cow_check_fix (struct cow_check *k, bool fixable);
/* For the check: the L2 table at l2_offset, pinned (the caller unpins
 * it), or NULL once a failure to read it is reported and counted as a
 * check error.  Called with the lock held. */
struct mc_entry *cow_check_l2 (struct cow *c, struct cow_check *k,
                               uint64_t l2_offset);
/* A finding of the check, to the caller's report function. */
#define cow_say(k, ...) check_report ((k)->report, (k)->opaque, __VA_ARGS__)

/* The shared part of a cluster format's state; the first member of it.
 * Lock order: writeback_lock, then the format's header_lock, then lock. */
struct cow {
  struct image *img;
  const struct cow_ops *ops;
  unsigned cluster_bits;
  unsigned table_bits;          /* log2 (entries of an L2 table) */
  bool big_endian;              /* the tables' byte order: qcow2's; QED's
                                   is little-endian */
  pthread_mutex_t writeback_lock; /* one writeback or structural change
                                     (new L2 table; qcow2: refcount block,
                                     refcount table, L1 write) at a time */
  pthread_mutex_t *header_lock; /* the format's: header writes, and
                                   marked */
  bool marked;                  /* the format's "may be inconsistent"
                                   mark (QED's NEED_CHECK, qcow2's dirty
                                   bit) is durable in the header; read
                                   without header_lock with __atomic */
  pthread_mutex_t lock;         /* the main lock: guards what follows,
                                   `meta` included */
  pthread_cond_t cond;          /* a change ended (an allocation, a new
                                   table, a writeback snapshot taken) */
  struct mc_table l1;           /* the L1 table, always resident */
  struct metacache *l2_cache;
  uint64_t file_end;            /* where the next allocation goes */
  uint64_t file_length;         /* the host file's length, grown ahead of
                                   file_end (host_grow_file) so that new
                                   clusters read as zeros (holes) */
  struct inflight *allocs;      /* changes in flight */
  bool broken;                  /* a metadata write failed: refuse
                                   changes */
  bool leaked;                  /* clusters a failed change reserved are
                                   left (QED: unreferenced; qcow2: still
                                   counted): the mark stays set */
  /* Where the metadata lies (overlap.h), under lock: the format adds
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
   * durable (synced_lengths, under lock). */
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

/* host_sync_image of the image's file (which asserts that the main lock
 * is not held); cow_fdatasync also sets the error ("fdatasync"). */
int cow_sync (struct cow *c);
int cow_fdatasync (struct cow *c);

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

/* Finds the table (what: "L2 table", "refcount block") at offset in
 * cache mc or reads it in; cow_get_l2 in the L2 cache.  Called with the
 * lock held; the read happens under it. */
int cow_load_table (struct cow *c, struct metacache *mc, uint64_t offset,
                    const char *what, struct mc_entry **ep);
int cow_get_l2 (struct cow *c, uint64_t l2_offset, struct mc_entry **ep);
/* Entry i of the L1 table (64 bits, in the format's byte order), and
 * setting it (the page is dirty).  Called with the lock held. */
static inline uint64_t
cow_l1_get (const struct cow *c, uint64_t i)
{
  const uint8_t *p = c->l1.data + i * 8;

  return c->big_endian ? be64_load (p) : le64_load (p);
}

static inline void
cow_l1_set (struct cow *c, uint64_t i, uint64_t value)
{
  uint8_t *p = c->l1.data + i * 8;

  if (c->big_endian)
    be64_store (p, value);
  else
    le64_store (p, value);
  mc_table_mark (&c->l1, i * 8, 8);
}

/* Grows the host file (host_grow_file, ahead in steps) to cover end.
 * Called with the lock held. */
static inline int
cow_grow_file (struct cow *c, uint64_t end)
{
  return host_grow_file (c->img, &c->file_length, end,
                         1ULL << c->cluster_bits);
}

/* Appends bytes at file_end (allocation only appends): their host
 * offset, or -1.  Called with the lock held. */
static inline int64_t
cow_append (struct cow *c, uint64_t bytes)
{
  uint64_t host = c->file_end;

  if (cow_grow_file (c, host + bytes) == -1)
    return -1;
  c->file_end = host + bytes;
  return (int64_t) host;
}

/* The L2 table at l2_offset for the lookup of run r (r->l2): cow_get_l2
 * (r->l2_loaded), or with cached_only from the cache alone (EAGAIN if it
 * is not there).  Called with the lock held. */
static inline int
cow_lookup_l2 (struct cow *c, uint64_t l2_offset, bool cached_only,
               struct cow_run *r)
{
  /* Dense or compact (metacache.h): the format's check_ready makes the
   * table dense before a change. */
  r->l2 = mc_peek (c->l2_cache, l2_offset);
  if (r->l2 != NULL)
    return 0;
  if (cached_only) {
    errno = EAGAIN;
    return -1;
  }
  r->l2_loaded = true;
  return cow_get_l2 (c, l2_offset, &r->l2);
}

/* Sets a 64-bit header field to value and has write_header (fmt) make
 * the header durable, under c->header_lock; on failure the field is as
 * it was. */
int cow_set_header_field (struct cow *c, uint64_t *field, uint64_t value,
                          int (*write_header) (void *fmt));
/* Sets (on) or clears the format's "may be inconsistent" mark (QED's
 * NEED_CHECK, qcow2's dirty bit) under c->header_lock, and c->marked
 * with it.  The bit is changed in *features and write_header (fmt) makes
 * the header durable; on failure *features is as it was.  features NULL:
 * the format has no such bit (qcow2 version 2), only c->marked
 * changes. */
int cow_set_mark (struct cow *c, bool on, uint64_t *features, uint64_t bit,
                  int (*write_header) (void *fmt));
/* The end of a read-write close or an emptying: the file cut back to
 * file_end where it was grown past it (under the lock), then synced
 * (without it). */
int cow_cut_and_sync (struct cow *c);
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

/* Sets c up and initialises its locks (cluster_bits is set once the
 * header is read); cow_init_header_lock initialises the format's header
 * lock (which stays in the format's state) and points c at it;
 * cow_destroy frees the L1 table and the L2 cache and destroys the
 * locks. */
void cow_init (struct cow *c, struct image *img, const struct cow_ops *ops);
void cow_init_header_lock (struct cow *c, pthread_mutex_t *header_lock);
void cow_destroy (struct cow *c);

/* cow-table.c: open and close, the check's start, tables. */

/* The driver's open: the format's state (size bytes, zeroed, starting
 * with a struct cow set up for ops) becomes img->priv, then ops->open
 * runs; on failure ops->release. */
int cow_open (struct image *img, const struct image_open_opts *opts,
              size_t size, const struct cow_ops *ops);
/* For the format's open, once it knows its geometry: the L2 cache (of
 * tables of table_bytes), the file's length and end. */
int cow_open_state (struct cow *c, const struct image_open_opts *opts,
                    uint64_t table_bytes, uint64_t file_size);
/* The driver's close and check (see cow-table.c). */
int cow_close (struct image *img);
int cow_check (struct image *img, unsigned flags,
               struct image_check_result *result, image_report_fn report,
               void *opaque);
/* mc_snapshot_write's write function (opaque: the struct cow). */
int cow_write_meta (void *cow, const void *buf, size_t len,
                    uint64_t offset);
/* A metadata write or sync failed, so the file and memory may disagree:
 * every later change is refused (broken), every later flush fails
 * (sticky), the mark stays set. */
void cow_set_broken (struct cow *c);

/* Cuts the file back to host if [host, end) are its last clusters (a
 * failed allocation's: a later one there must find holes): true if it
 * did.  Called with the lock held. */
bool cow_cut_back (struct cow *c, uint64_t host, uint64_t end);
/* Writes the dirty pages of a resident table (the L1 table, qcow2's
 * refcount table) outside the writeback, after cow_order_tables: no
 * sync.  On failure the whole table is dirty again.  Called with the
 * lock held. */
int cow_write_table_pages (struct cow *c, struct mc_table *t);
/* A new table at offset whose content is known (content, or zeros if
 * NULL): cached, clean.  Without memory it is read in when needed.
 * Called with the lock held. */
void cow_cache_new_table (struct cow *c, uint64_t offset,
                          const uint8_t *content);

/* The writeback's steps (a format with more caches than the L2 cache
 * adds its own around them; cow_writeback_l2 is the whole writeback of
 * one without).  Called with writeback_lock held.
 * cow_snapshot_cache: the dirty pages of cache mc copied into snap, its
 * entries pinned (lock held).  cow_writeback_begin (lock held): refused
 * once broken; the L2 cache's snapshot, and cow_flush_begin.
 * cow_write_tables (no lock): the sync before (rule 1, unless ordered
 * is false and there is something to write), the tables, the sync
 * after (rule 4).  cow_writeback_end (lock held), r the result: what
 * could not be written is dirty again and the image broken; unpinned,
 * the cache shrunk to its bound. */
int cow_snapshot_cache (struct cow *c, struct mc_snapshot *snap,
                        struct metacache *mc);
int cow_writeback_begin (struct cow *c, struct mc_snapshot *l2,
                         uint64_t *lengths, bool *ordered);
int cow_write_tables (struct cow *c, struct mc_snapshot *l2, bool ordered);
void cow_writeback_end (struct cow *c, struct mc_snapshot *l2,
                        uint64_t lengths, bool ordered, int r);
int cow_writeback_l2 (struct cow *c);

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
