/* SPDX-License-Identifier: BSD-3-Clause */
/* The metadata cache: a bounded set of on-disk tables (QED L2 tables,
 * qcow2 L2 tables and refcount blocks) held in memory, shared by the
 * formats.  It does no I/O and takes no locks: the format driver loads
 * tables, writes them back and serialises access with its own lock.
 *
 *   table in the file          entry in the cache
 *   +------+------+------+     +------------------------------+
 *   | page | page | page | ==> | data (on-disk byte order)    |
 *   +------+------+------+     | dirty pages: 0 1 0           |
 *                              | pins, gen, LRU position      |
 *                              +------------------------------+
 *
 * Writeback, not write-through: a change marks the touched 4 KiB pages of
 * the table dirty and the driver writes only those pages back, at flush,
 * on FUA and when the cache must shrink.  The crash-ordering rules
 * (shared/DESIGN.md) are the driver's to keep; the cache only tells it
 * what is dirty and takes a consistent copy of it (mc_snapshot) so that
 * the driver can write the copy without holding its lock.
 *
 * Bound: the cache holds at most `capacity` bytes of tables unless every
 * entry is pinned or dirty; then it grows past the bound and says so
 * (mc_over_budget), and the driver writes back and shrinks it once its
 * lock is free.  A pinned entry (a write allocating into it is in flight)
 * is never evicted.
 *
 * Compact tables (mc_allow_compact, for L2 tables).  A thin image's
 * tables are almost all zero words: a 1 TiB qcow2 image with one
 * cluster in 1024 allocated has 2048 L2 tables of 64 KiB, 8 non-zero
 * words each.  When the cache must make room, the least recently used
 * clean, unpinned table is not dropped but, if few of its words are
 * non-zero, kept compact: the sorted list of its non-zero words, charged
 * to the bound at that size (12 bytes a word and the entry itself).
 *
 *   dense:   data = [w0 w1 0 0 0 ... 0 w8191]     table_bytes
 *   compact: data = NULL, idx = [0 1 8191],       12 bytes a word
 *                         val = [w0 w1 w8191]
 *
 * A table a read loads need not wait for the cache to fill: the driver
 * compacts it at once (mc_compact_loaded), so that a thin image's cache
 * holds its tables at their compact size from the start - 2048 tables of
 * 64 KiB with 8 words each in ~0.4 MiB, not 32 MiB of dense ones until
 * the bound is reached.  A table loaded for a change stays dense: the
 * change would expand it again at once.
 *
 * A read answers from either form (mc_peek, then mc_word); every other
 * caller gets dense tables only: mc_find and mc_make_dense expand a
 * compact one in place (same entry, no I/O).  Only a clean, unpinned
 * table is ever compacted, so dirty tables are always dense and the
 * writeback and snapshots below only ever see dense ones.  A compact
 * table leaves the cache (an eviction) only when no dense table can make
 * room.
 *
 * Figures (mc_get_stats): a lookup answered from a compact table is a
 * hit like any other (no I/O); a miss is a table read from the file; an
 * eviction is a table dropped from memory; making a table compact is
 * neither (mc_compactions counts those).
 */
#ifndef COWBD_METACACHE_H
#define COWBD_METACACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Dirty tracking granularity: one bit per page of a table. */
#define MC_PAGE_SIZE 4096

/* An image's metadata cache size in bytes when image_open_opts.cache_size
 * is 0. */
#define MC_DEFAULT_CACHE_SIZE (32ULL << 20)

/* A table in memory.  Also used on its own (not in a cache) for tables
 * that are always resident, such as the QED L1 table. */
struct mc_table {
  uint64_t offset;              /* byte offset of the table in the file */
  size_t bytes;                 /* table size: any; the last dirty page
                                   may be a partial one */
  uint8_t *data;                /* the table, on-disk byte order */
  uint64_t *dirty;              /* bitmap, one bit per page */
  bool any_dirty;
};

struct mc_entry {
  struct mc_table t;            /* t.data is NULL while compact */
  unsigned pins;
  /* Compact: the nwords non-zero words, their values as stored (val)
   * and their indexes in the table (idx, ascending); one allocation. */
  uint32_t nwords;
  uint64_t *val;
  uint32_t *idx;
  struct mc_entry *hash_next;
  struct mc_entry *lru_prev, *lru_next; /* most recently used first */
};

struct metacache;

/* A cache of tables of table_bytes each, holding about capacity bytes
 * (at least min_entries tables). */
struct metacache *mc_new (size_t table_bytes, uint64_t capacity,
                          unsigned min_entries);
void mc_free (struct metacache *mc);

/* Lets the cache keep clean, mostly-zero tables compact (see above).
 * Their size must be a multiple of 8 bytes. */
void mc_allow_compact (struct metacache *mc);

/* The entry for the table at offset, dense, or NULL; a hit moves it to
 * the head of the LRU list.  A compact table is expanded (over the bound
 * if need be, as a pinned one would be; on ENOMEM it is dropped and the
 * answer is NULL). */
struct mc_entry *mc_find (struct metacache *mc, uint64_t offset);

/* The same for reading only: the entry in whichever form it is, for
 * mc_word.  Nothing may change or pin it without mc_make_dense first. */
struct mc_entry *mc_peek (struct metacache *mc, uint64_t offset);

/* Expands e if compact, making room for it (never by compacting e), so
 * that it may be changed.  0, or -1 with errno ENOMEM (e stays compact). */
int mc_make_dense (struct metacache *mc, struct mc_entry *e);

/* Makes e compact now if the cache may (mc_allow_compact), e is clean,
 * unpinned and dense, and few of its words are non-zero; else leaves it
 * as it is.  For a table just loaded for reading: e stays in the cache,
 * the same entry, for mc_word. */
void mc_compact_loaded (struct metacache *mc, struct mc_entry *e);

uint64_t mc_compact_word (const struct mc_entry *e, size_t byte);

/* The 8-byte word at byte (a multiple of 8) of the table, in on-disk
 * byte order, whichever form the entry is in. */
static inline uint64_t
mc_word (const struct mc_entry *e, size_t byte)
{
  uint64_t w;

  if (__builtin_expect (e->t.data == NULL, 0))
    return mc_compact_word (e, byte);
  memcpy (&w, e->t.data + byte, sizeof w);
  return w;
}

/* A new dense entry for the table at offset (not already present),
 * making room first (clean unpinned tables from the LRU tails made
 * compact or evicted) when over the bound.  Its data is uninitialised:
 * the caller loads or zeroes it.  NULL on ENOMEM. */
struct mc_entry *mc_insert (struct metacache *mc, uint64_t offset);

/* Drops the entry (clean or not) from the cache. */
void mc_remove (struct metacache *mc, struct mc_entry *e);

/* True while the cache holds more than its bound. */
bool mc_over_budget (const struct metacache *mc);
/* Makes room (as mc_insert does) until within the bound (or no clean
 * unpinned entry is left). */
void mc_shrink (struct metacache *mc);

/* Calls fn for each entry with dirty pages; stops at and returns the
 * first non-zero return of fn. */
int mc_for_each_dirty (struct metacache *mc,
                       int (*fn) (struct mc_entry *e, void *opaque),
                       void *opaque);

size_t mc_table_bytes (const struct metacache *mc);
/* Adds the cache's lookups that hit, tables it had to load (inserts:
 * the misses) and evictions to the three figures. */
void mc_get_stats (const struct metacache *mc, uint64_t *hits,
                   uint64_t *misses, uint64_t *evictions);
unsigned mc_count (const struct metacache *mc);
/* The bytes of tables the cache holds (what the bound counts: dense
 * tables at their size, compact ones at their charge); may be read
 * without the driver's lock. */
uint64_t mc_bytes (const struct metacache *mc);
/* How many tables the cache made compact (for tests and diagnostics). */
uint64_t mc_compactions (const struct metacache *mc);

/* ---- tables: dirty pages and snapshots --------------------------------- */

/* Allocates data and the dirty bitmap of a table (data zeroed). */
int mc_table_init (struct mc_table *t, uint64_t offset, size_t bytes);
void mc_table_release (struct mc_table *t);

/* Marks bytes [start, start + len) of the table dirty. */
void mc_table_mark (struct mc_table *t, size_t start, size_t len);
/* Marks the whole table dirty. */
void mc_table_mark_all (struct mc_table *t);
/* Forgets the table's dirty pages (the caller wrote the table itself). */
void mc_table_clean (struct mc_table *t);

/* A copy of dirty pages, taken under the driver's lock and written without
 * it.  Taking a snapshot clears the dirty bits it copied; if writing the
 * copy fails, mc_snapshot_redirty marks those pages dirty again.  Every
 * table in a snapshot must stay in memory until the snapshot is freed:
 * one always resident (an L1 table), or a cache entry pinned by
 * mc_snapshot_cache. */
struct mc_snapshot;

struct mc_snapshot *mc_snapshot_new (void);
/* Copies the dirty pages of t into the snapshot (runs of adjacent dirty
 * pages become one write) and clears them.  -1 on ENOMEM (nothing
 * cleared). */
int mc_snapshot_add (struct mc_snapshot *s, struct mc_table *t);
/* Copies the dirty pages of every entry of the cache, pinning each entry
 * it takes, so that none is evicted and read back stale before its copy
 * reached the file.  On ENOMEM (-1) everything the snapshot held is dirty
 * again and unpinned: free it. */
int mc_snapshot_cache (struct mc_snapshot *s, struct metacache *mc);
/* Unpins what mc_snapshot_cache pinned; called with the driver's lock
 * held, after any mc_snapshot_redirty. */
void mc_snapshot_unpin (struct mc_snapshot *s);
bool mc_snapshot_empty (const struct mc_snapshot *s);
/* Writes every copied run with pwrite_fn(opaque, buf, len, file_offset),
 * in file offset order.  Returns 0 or the first -1. */
int mc_snapshot_write (struct mc_snapshot *s,
                       int (*pwrite_fn) (void *opaque, const void *buf,
                                         size_t len, uint64_t offset),
                       void *opaque);
/* After a failed write: marks the copied ranges dirty again. */
void mc_snapshot_redirty (struct mc_snapshot *s);
/* Frees the copies (the snapshot must hold no pins). */
void mc_snapshot_free (struct mc_snapshot *s);

#endif /* COWBD_METACACHE_H */
