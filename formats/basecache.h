/* SPDX-License-Identifier: BSD-3-Clause */
/* The host-wide cache for remote backing images (--base-cache=DIR).
 *
 * It sits between a remote source (an NBD export read through libnbd) and
 * the network: every range of the remote is fetched once per host, kept
 * in a sparse file per remote base in DIR, shared by every user in the
 * process and kept across restarts.  basecache.c explains the file layout
 * and the crash rules; man cowbd-formats(5) describes them for users.
 */
#ifndef COWBD_BASECACHE_H
#define COWBD_BASECACHE_H

#include <stddef.h>
#include <stdint.h>

/* Reads count bytes at offset of the remote into buf: 0, or -1 with
 * errno.  Called from any thread, several at once, never with a cache
 * lock held.  What it is asked for: to fill the cache, runs of whole
 * 64 KiB chunks (up to 1 MiB, 64 KiB-aligned, or up to BC_RA_RUN chunks
 * for read-ahead; the last chunk of the base may be short); at the first open of a base, up to eight 4 KiB-aligned
 * blocks of 4 KiB (the fingerprint); from an uncached handle, exactly
 * the caller's reads.  Its errno reaches the reads that needed it (also
 * those that waited for the same chunk); nothing is retried inside. */
typedef int (*basecache_fetch_fn) (void *opaque, void *buf, size_t count,
                                   uint64_t offset);

struct basecache_opts {
  const char *dir;              /* the cache folder; must exist */
  uint64_t max_bytes;           /* bound on cached data; 0: no bound */
  unsigned readahead;           /* chunks read ahead of a sequential
                                 * reader; 0: none */
};

/* Read-ahead fetches this many chunks at most at once (4 MiB). */
#define BC_RA_RUN 64

struct basecache_stats {
  uint64_t hits;                /* reads served from the cache file alone */
  uint64_t misses;              /* reads that fetched from the remote */
  uint64_t fetched_bytes;       /* bytes fetched to fill the cache */
  uint64_t evicted_bytes;       /* bytes dropped to keep max_bytes */
  uint64_t cached_bytes;        /* bytes the cache holds now */
  uint64_t fingerprint_bytes;   /* bytes fetched at open to key the cache */
  int uncached;                 /* 1: another process holds the cache
                                 * file, reads go straight to the remote */
};

struct basecache;

/* Opens (or creates) the cache of the remote named uri, of size bytes,
 * read through fetch (which the handle keeps using until
 * basecache_close).  Opens of the same uri and size in one process share
 * one cache, each with its own fetch function.  NULL with errno on error.
 * *msg (malloc'd, may be NULL) is a line for the log: why a cache was
 * discarded, why this handle runs uncached, or what failed. */
struct basecache *basecache_open (const struct basecache_opts *opts,
                                  const char *uri, uint64_t size,
                                  basecache_fetch_fn fetch, void *opaque,
                                  char **msg);

/* Reads count bytes at offset (offset + count <= size): 0, or -1 with
 * errno.  Thread-safe. */
int basecache_read (struct basecache *bc, void *buf, size_t count,
                    uint64_t offset);

/* The counters of the shared cache (every handle on it). */
void basecache_get_stats (struct basecache *bc, struct basecache_stats *st);

/* Closes the handle; the last one makes the cache's records durable. */
void basecache_close (struct basecache *bc);

#endif /* COWBD_BASECACHE_H */
