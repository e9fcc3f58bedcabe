/* SPDX-License-Identifier: BSD-3-Clause */
/* qcow2 I/O paths: reads, writes (in place, or allocating with copy on
 * write), write zeroes, trim and block status.
 *
 * Every path walks the request as "runs": consecutive guest clusters in
 * one L2 table in the same state (and, for data, contiguous in the file
 * with the same COPIED flag).  The lookup of a run holds q->lock; the
 * data I/O does not.
 *
 * A write goes in place only into a cluster whose L2 entry has COPIED
 * set, in a table whose L1 entry has COPIED set: its refcount is 1, no
 * snapshot sees it.  Everything else - unallocated, zero, compressed, or
 * shared with a snapshot - is an allocating write of a run of n clusters:
 *
 *   1. under the lock: the dirty bit is durable; the L2 table exists and
 *      is ours (else it is created or copied first, see qcow2-table.c);
 *      no other change covers these clusters (else wait); the refcount
 *      structure covers n more clusters; then n clusters are reserved at
 *      the end of the file (refcount 1) and the change recorded;
 *   2. without the lock: one write of the guest data and, around it, the
 *      rest of the first and last cluster: the backing image's data, the
 *      old cluster's (shared or compressed), or nothing where that reads
 *      as zeros (the new clusters are a hole until written);
 *   3. under the lock: the L2 entries point at the new clusters with
 *      COPIED; the references the old entries held are dropped (their
 *      counts go down once the new entries are durable); the change ends.
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
 *
 * The non-blocking calls (qcow2_pread_nowait, qcow2_pwrite_nowait, for
 * the server's inline requests) take the same paths with two differences:
 * the metadata lock is only tried and a table must already be cached
 * (reads, and writes to a file that is not in memory), and every place
 * that would wait for another thread - the dirty bit write, a new or
 * copied L2 table, a refcount structure to grow, a cluster another
 * request is allocating - answers EAGAIN instead; the caller then does
 * the whole request again with the blocking call.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "cleanup.h"
#include "minmax.h"
#include "qcow2.h"
#include "rounding.h"

struct qcow2_run {
  enum qcow2_kind kind;
  uint64_t len;                 /* bytes from the request's offset */
  uint64_t host;                /* Q_DATA: file offset of that byte */
  uint64_t entry;               /* the first cluster's entry */
  bool in_place;                /* Q_DATA that may be written in place */
  struct mc_entry *l2;          /* NULL: the L1 entry is empty (or bad) */
  bool l2_shared;               /* the L1 entry lacks COPIED */
  uint64_t l1_index, l2_index;  /* of the first cluster */
  const char *why;              /* Q_INVALID: what is wrong */
  bool bad_table;               /* Q_INVALID: the L1 entry is bad */
};

/* ---- lookup ---------------------------------------------------------- */

/* Whether entry en continues a run starting with e0 (n clusters on). */
static bool
continues (struct qcow2 *q, enum qcow2_kind kind, uint64_t e0, uint64_t en,
           uint64_t n)
{
  const char *why;

  if (qcow2_entry_kind (q, en, q->file_end, &why) != kind)
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
                    struct qcow2_run *r)
{
  uint64_t scs = q->subcluster_size, sc = in_cluster / scs, end;
  uint32_t alloc = (uint32_t) bitmap, zero = (uint32_t) (bitmap >> 32);
  enum qcow2_kind k;

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

/* Describes the run at offset, at most count bytes.  Called with q->lock
 * held (a cache miss reads the table under it, or with cached_only fails
 * with EAGAIN). */
static int
lookup (struct qcow2 *q, uint64_t offset, uint64_t count, bool cached_only,
        struct qcow2_run *r)
{
  uint64_t cs = q->cluster_size, c = qcow2_cluster_of (q, offset);
  uint64_t in_cluster = offset & (cs - 1), want, n = 1, l1e, e0;

  memset (r, 0, sizeof *r);
  r->l1_index = qcow2_l1_index (q, c);
  r->l2_index = qcow2_l2_index (q, c);
  want = MIN (DIV_ROUND_UP (in_cluster + count, cs),
              q->l2_entries - r->l2_index);
  l1e = qcow2_l1_get (q, r->l1_index);
  r->entry = l1e;
  if ((r->why = qcow2_l1_entry_error (q, l1e, q->file_end)) != NULL) {
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
  if (cached_only) {
    r->l2 = mc_find (q->l2_cache, l1e & QCOW2_OFFSET_MASK);
    if (r->l2 == NULL) {
      errno = EAGAIN;
      return -1;
    }
  }
  else if (qcow2_get_l2 (q, l1e & QCOW2_OFFSET_MASK, &r->l2) == -1)
    return -1;
  r->l2_shared = !(l1e & QCOW2_COPIED);
  e0 = qcow2_l2_get (q, r->l2, r->l2_index);
  r->entry = e0;
  r->kind = qcow2_entry_kind (q, e0, q->file_end, &r->why);
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
lookup_run (struct qcow2 *q, uint64_t offset, uint64_t count,
            struct qcow2_run *r)
{
  return lookup (q, offset, count, false, r);
}

static int
lookup_run_locked (struct qcow2 *q, uint64_t offset, uint64_t count,
                   struct qcow2_run *r)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->lock);
  return lookup_run (q, offset, count, r);
}

static int
invalid_error (struct qcow2 *q, const struct qcow2_run *r, uint64_t offset)
{
  if (r->bad_table)
    return image_errf (q->img, EIO, "L1 entry 0x%" PRIx64 " (for offset %"
                       PRIu64 ") is invalid: %s: run cowbd-img check -r all",
                       r->entry, offset, r->why);
  return image_errf (q->img, EIO, "L2 entry 0x%" PRIx64 " (for offset %"
                     PRIu64 ") is invalid: %s: run cowbd-img check -r all",
                     r->entry, offset, r->why);
}

/* ---- read --------------------------------------------------------------- */

static int
read_compressed (struct qcow2 *q, const struct qcow2_run *r, uint8_t *p,
                 uint64_t offset)
{
  CLEANUP_FREE uint8_t *tmp = malloc (q->cluster_size);

  if (tmp == NULL)
    return image_errf (q->img, ENOMEM, "out of memory");
  if (qcow2_read_compressed (q, r->entry, tmp) == -1)
    return -1;
  memcpy (p, tmp + (offset & (q->cluster_size - 1)), r->len);
  return 0;
}

static int
read_run (struct qcow2 *q, const struct qcow2_run *r, uint8_t *p,
          uint64_t offset)
{
  struct image *img = q->img;

  switch (r->kind) {
  case Q_DATA:
    if (host_pread (img->fd, p, r->len, r->host) == -1)
      return image_errf (img, errno, "reading offset %" PRIu64 ": %s",
                         offset, strerror (errno));
    return 0;
  case Q_ZERO:
    memset (p, 0, r->len);
    return 0;
  case Q_UNALLOC:
    return image_read_backing (img, p, r->len, offset);
  case Q_COMPRESSED:
    return read_compressed (q, r, p, offset);
  case Q_INVALID:
    return invalid_error (q, r, offset);
  }
  abort ();
}

int
qcow2_pread (struct image *img, void *buf, size_t count, uint64_t offset)
{
  struct qcow2 *q = img->priv;
  uint8_t *p = buf;

  while (count > 0) {
    struct qcow2_run r;

    if (lookup_run_locked (q, offset, count, &r) == -1 ||
        read_run (q, &r, p, offset) == -1)
      return -1;
    p += r.len;
    offset += r.len;
    count -= r.len;
  }
  return 0;
}

/* What the non-blocking calls do instead of waiting. */
static int
must_wait (void)
{
  errno = EAGAIN;
  return -1;
}

/* Looks the run up without waiting: a contended lock or a table not in
 * the cache is EAGAIN. */
static int
lookup_run_nowait (struct qcow2 *q, uint64_t offset, uint64_t count,
                   struct qcow2_run *r)
{
  int ret;

  if (pthread_mutex_trylock (&q->lock) != 0)
    return must_wait ();
  ret = lookup (q, offset, count, true, r);
  pthread_mutex_unlock (&q->lock);
  return ret;
}

/* Compressed and invalid clusters go to the blocking path (which
 * decompresses, or says what is wrong). */
int
qcow2_pread_nowait (struct image *img, void *buf, size_t count,
                    uint64_t offset)
{
  struct qcow2 *q = img->priv;
  uint8_t *p = buf;

  while (count > 0) {
    struct qcow2_run r;
    int ret;

    if (lookup_run_nowait (q, offset, count, &r) == -1)
      return -1;
    switch (r.kind) {
    case Q_DATA:
      ret = host_pread_nowait (img, p, r.len, r.host);
      break;
    case Q_ZERO:
      memset (p, 0, r.len);
      ret = 0;
      break;
    case Q_UNALLOC:
      ret = image_read_backing_nowait (img, p, r.len, offset);
      break;
    default:
      ret = must_wait ();
    }
    if (ret == -1)
      return -1;
    p += r.len;
    offset += r.len;
    count -= r.len;
  }
  return 0;
}

/* ---- preparing a change ------------------------------------------------- */

/* Runs fn without q->lock; returns 1 (the caller looks up again) or -1. */
static int
unlocked (struct qcow2 *q, int (*fn) (struct qcow2 *, uint64_t),
          uint64_t arg)
{
  int r;

  pthread_mutex_unlock (&q->lock);
  r = fn (q, arg);
  pthread_mutex_lock (&q->lock);
  return r == -1 ? -1 : 1;
}

static int
set_dirty_fn (struct qcow2 *q, uint64_t unused)
{
  return qcow2_set_dirty (q, true);
}

static int
create_l2_fn (struct qcow2 *q, uint64_t i)
{
  return qcow2_create_l2 (q, i);
}

static int
cow_l2_fn (struct qcow2 *q, uint64_t i)
{
  return qcow2_cow_l2 (q, i);
}

static int
cover_fn (struct qcow2 *q, uint64_t bytes)
{
  return qcow2_cover (q, bytes);
}

/* Makes clusters [first, first + *n) of run r free to change: the dirty
 * bit is durable, the L2 table exists and is ours, no change in flight
 * touches them (the run is shortened to stop before one that starts
 * later), and, if alloc, the refcount structure covers *n new clusters.
 * Called with q->lock held; returns 1 when it had to drop the lock (the
 * caller looks the run up again), 0 when ready, -1 on error (lock still
 * held) or, with nowait, EAGAIN where it would have waited. */
static int
prepare_change (struct qcow2 *q, struct qcow2_run *r, uint64_t first,
                uint64_t *n, bool alloc, bool nowait)
{
  struct inflight *a = inflight_find (q->allocs, first, *n);

  if (q->broken)
    return image_errf (q->img, EIO, "an earlier metadata write failed; "
                       "the image needs a check");
  if (__atomic_load_n (&q->corrupt, __ATOMIC_ACQUIRE))
    return image_errf (q->img, EIO, "the image is marked corrupt: repair "
                       "it with cowbd-img check -r all");
  if (nowait && (!__atomic_load_n (&q->dirty_on_disk, __ATOMIC_ACQUIRE) ||
                 r->l2 == NULL || r->l2_shared || (a && a->first <= first) ||
                 (alloc && !qcow2_covered (q, q->file_end,
                                           *n << q->cluster_bits))))
    return must_wait ();
  if (!__atomic_load_n (&q->dirty_on_disk, __ATOMIC_ACQUIRE))
    return unlocked (q, set_dirty_fn, 0);
  if (r->l2 == NULL)
    return unlocked (q, create_l2_fn, r->l1_index);
  if (r->l2_shared)
    return unlocked (q, cow_l2_fn, r->l1_index);
  if (a && a->first <= first) {
    pthread_cond_wait (&q->cond, &q->lock);
    return 1;
  }
  if (a)
    *n = a->first - first;
  if (alloc && !qcow2_covered (q, q->file_end, *n << q->cluster_bits))
    return unlocked (q, cover_fn, *n << q->cluster_bits);
  return 0;
}

/* ---- allocating writes -------------------------------------------------- */

/* Where the parts of new clusters that the guest data does not cover come
 * from. */
struct fill {
  struct qcow2 *q;
  const struct qcow2_run *r;
  uint64_t first_guest;         /* guest offset of the first new cluster */
  uint64_t old_host;            /* Q_DATA: file offset of the old run */
  uint8_t *cluster;             /* Q_COMPRESSED: the old cluster */
};

/* Fills [guest, guest + len) of the new run into *buf (malloc'd), or
 * leaves *buf NULL where it reads as zeros (the new cluster is a hole). */
static int
fill_part (struct fill *f, uint64_t guest, uint64_t len, uint8_t **buf)
{
  struct qcow2 *q = f->q;

  *buf = NULL;
  if (len == 0 || f->r->kind == Q_ZERO)
    return 0;
  if (f->r->kind == Q_UNALLOC && image_backing_is_zero (q->img, guest, len))
    return 0;
  *buf = malloc (len);
  if (*buf == NULL)
    return image_errf (q->img, ENOMEM, "out of memory");
  switch (f->r->kind) {
  case Q_UNALLOC:
    return image_read_backing (q->img, *buf, len, guest);
  case Q_DATA:
    if (host_pread (q->img->fd, *buf, len,
                    f->old_host + (guest - f->first_guest)) == -1)
      return image_errf (q->img, errno, "reading a cluster to copy: %s",
                         strerror (errno));
    return 0;
  case Q_COMPRESSED:
    memcpy (*buf, f->cluster + (guest - f->first_guest), len);
    return 0;
  default:
    abort ();
  }
}

/* Writes a new run of n clusters at host: the guest data [offset,
 * offset + len) and the fills around it.  Called without the lock. */
static int
write_new_clusters (struct qcow2 *q, const struct qcow2_run *r,
                    const uint8_t *buf, uint64_t len, uint64_t offset,
                    uint64_t n, uint64_t host)
{
  uint64_t cs = q->cluster_size;
  uint64_t first = ROUND_DOWN (offset, cs);
  uint64_t head = offset - first, tail = n * cs - head - len;
  struct fill f = { q, r, first, r->host - head, NULL };
  CLEANUP_FREE uint8_t *cluster = NULL;
  CLEANUP_FREE uint8_t *hb = NULL;
  CLEANUP_FREE uint8_t *tb = NULL;
  struct iovec iov[3];
  uint64_t start = host + head;
  int iovcnt = 0;

  if (r->kind == Q_COMPRESSED && (head || tail)) {
    f.cluster = cluster = malloc (cs);
    if (cluster == NULL)
      return image_errf (q->img, ENOMEM, "out of memory");
    if (qcow2_read_compressed (q, r->entry, cluster) == -1)
      return -1;
  }
  if (fill_part (&f, first, head, &hb) == -1 ||
      fill_part (&f, offset + len, tail, &tb) == -1)
    return -1;
  if (hb) {
    iov[iovcnt++] = (struct iovec) { hb, head };
    start = host;
  }
  iov[iovcnt++] = (struct iovec) { (void *) buf, len };
  if (tb)
    iov[iovcnt++] = (struct iovec) { tb, tail };
  if (host_pwritev (q->img->fd, iov, iovcnt, start) == -1)
    return image_errf (q->img, errno, "writing new clusters at 0x%" PRIx64
                       ": %s", host, strerror (errno));
  return 0;
}

/* Points the n entries of the run at the new clusters, dropping what the
 * old entries held.  Called with q->lock held. */
static int
link_new_clusters (struct qcow2 *q, struct mc_entry *l2, uint64_t l2_index,
                   uint64_t n, uint64_t host)
{
  uint64_t i;

  for (i = 0; i < n; i++) {
    uint64_t old = qcow2_l2_get (q, l2, l2_index + i);
    /* A zero cluster's host cluster is never read: its blocks can go. */
    if (qcow2_drop_entry (q, old, (old & (QCOW2_ZERO | QCOW2_COMPRESSED))
                          == QCOW2_ZERO) == -1)
      return -1;
    qcow2_l2_set (q, l2, l2_index + i,
                  (host + i * q->cluster_size) | QCOW2_COPIED);
  }
  return 0;
}

/* Allocates the run r at offset and writes buf there.  Called with
 * q->lock held; returns with it released.  *done is the number of bytes
 * written, 0 when the run has to be looked up again. */
static int
allocate_run (struct qcow2 *q, struct qcow2_run *r, const uint8_t *buf,
              uint64_t offset, bool nowait, uint64_t *done)
{
  uint64_t cs = q->cluster_size, first = qcow2_cluster_of (q, offset);
  uint64_t in_cluster = offset & (cs - 1);
  uint64_t n = DIV_ROUND_UP (in_cluster + r->len, cs), len;
  struct inflight a;
  struct mc_entry *l2;
  int64_t host;
  int ret;

  *done = 0;
  ret = prepare_change (q, r, first, &n, true, nowait);
  if (ret != 0) {
    pthread_mutex_unlock (&q->lock);
    return ret == 1 ? 0 : -1;
  }
  len = MIN (r->len, n * cs - in_cluster);
  host = qcow2_alloc_clusters (q, n);
  if (host == -1) {
    pthread_mutex_unlock (&q->lock);
    return -1;
  }
  inflight_add (&q->allocs, &a, first, n);
  l2 = r->l2;
  l2->pins++;
  pthread_mutex_unlock (&q->lock);

  ret = write_new_clusters (q, r, buf, len, offset, n, (uint64_t) host);

  pthread_mutex_lock (&q->lock);
  /* On failure the clusters stay counted and unreferenced: a leak that
   * the dirty bit gets repaired at the next open. */
  if (ret == 0 &&
      (ret = link_new_clusters (q, l2, r->l2_index, n, (uint64_t) host)) == 0)
    *done = len;
  l2->pins--;
  inflight_remove (&q->allocs, &a);
  pthread_cond_broadcast (&q->cond);
  pthread_mutex_unlock (&q->lock);
  return ret;
}

/* ---- write -------------------------------------------------------------- */

/* Writes back if a cache grew past its bound (or FUA asks for it). */
static int
finish_write (struct qcow2 *q, unsigned flags)
{
  bool over;

  if (flags & IMAGE_FUA)
    return qcow2_writeback (q, false);
  pthread_mutex_lock (&q->lock);
  over = mc_over_budget (q->l2_cache) || mc_over_budget (q->rb_cache);
  pthread_mutex_unlock (&q->lock);
  return over ? qcow2_writeback (q, false) : 0;
}

static int
write_runs (struct qcow2 *q, const uint8_t *p, size_t count, uint64_t offset,
            bool nowait)
{
  struct image *img = q->img;

  while (count > 0) {
    struct qcow2_run r;
    uint64_t done;

    pthread_mutex_lock (&q->lock);
    if (lookup_run (q, offset, count, &r) == -1) {
      pthread_mutex_unlock (&q->lock);
      return -1;
    }
    if (r.kind == Q_INVALID) {
      pthread_mutex_unlock (&q->lock);
      return invalid_error (q, &r, offset);
    }
    if (r.kind == Q_DATA && r.in_place) {
      pthread_mutex_unlock (&q->lock);
      if (host_pwrite (img->fd, p, r.len, r.host) == -1)
        return image_errf (img, errno, "writing offset %" PRIu64 ": %s",
                           offset, strerror (errno));
      done = r.len;
    }
    else if (allocate_run (q, &r, p, offset, nowait, &done) == -1)
      return -1;
    p += done;
    offset += done;
    count -= done;
  }
  return 0;
}

int
qcow2_pwrite (struct image *img, const void *buf, size_t count,
              uint64_t offset, unsigned flags)
{
  struct qcow2 *q = img->priv;

  if (write_runs (q, buf, count, offset, false) == -1)
    return -1;
  return finish_write (q, flags);
}

/* With the whole chain in memory nothing waits for I/O: the write runs
 * as usual, refusing only what would wait for another thread (a new or
 * shared L2 table, the first dirty bit write, a cluster being allocated,
 * a refcount structure to grow).  Otherwise only an overwrite of our own
 * data clusters, contiguous in the file, in one RWF_NOWAIT call. */
int
qcow2_pwrite_nowait (struct image *img, const void *buf, size_t count,
                     uint64_t offset, unsigned flags)
{
  struct qcow2 *q = img->priv;
  struct qcow2_run r;

  if (img->chain_in_memory) {
    if (write_runs (q, buf, count, offset, true) == -1)
      return -1;
    return finish_write (q, flags);
  }
  if (lookup_run_nowait (q, offset, count, &r) == -1)
    return -1;
  if (r.kind != Q_DATA || !r.in_place || r.len != count)
    return must_wait ();
  return host_pwrite_nowait (img, buf, count, r.host);
}

/* Writes len zero bytes through the allocating path. */
static int
write_zeros (struct qcow2 *q, uint64_t len, uint64_t offset)
{
  while (len > 0) {
    uint64_t m = MIN (len, (uint64_t) HOST_ZEROS_SIZE);
    if (write_runs (q, host_zeros, m, offset, false) == -1)
      return -1;
    offset += m;
    len -= m;
  }
  return 0;
}

/* ---- write zeroes and trim ---------------------------------------------- */

/* Zeros an allocated range of our own in place: a hole where allowed,
 * else zeros written by fallocate (or, unless fast, by plain writes). */
static int
zero_in_place (struct qcow2 *q, uint64_t host, uint64_t len, unsigned flags)
{
  int fd = q->img->fd;

  image_host_may_have_holes (q->img);
  if ((flags & IMAGE_MAY_TRIM) && host_punch_hole (fd, len, host) == 0)
    return 0;
  if (host_write_zeroes_fast (fd, len, host) == 0)
    return 0;
  if (flags & IMAGE_FAST_ZERO)
    return image_errf (q->img, ENOTSUP, "fast zero: the host file cannot "
                       "zero quickly");
  if (host_write_zeroes (fd, len, host, false) == -1)
    return image_err_sys (q->img, "write zeroes");
  return 0;
}

static bool
reads_zero_below (struct qcow2 *q, uint64_t offset, uint64_t len)
{
  return image_backing_is_zero (q->img, offset, len);
}

/* Whether zeroing part of a cluster in run r needs no copy on write. */
static bool
partial_is_fast (struct qcow2 *q, const struct qcow2_run *r, uint64_t len,
                 uint64_t offset)
{
  switch (r->kind) {
  case Q_DATA: return r->in_place;
  case Q_ZERO: return true;
  case Q_UNALLOC: return reads_zero_below (q, offset, len);
  default: return false;
  }
}

/* Zeros len bytes (within one cluster) at offset. */
static int
zero_partial (struct qcow2 *q, const struct qcow2_run *r, uint64_t len,
              uint64_t offset, unsigned flags)
{
  if (r->kind == Q_DATA && r->in_place)
    return zero_in_place (q, r->host, len, flags);
  if (partial_is_fast (q, r, len, offset))
    return 0;
  if (flags & IMAGE_FAST_ZERO)
    return image_errf (q->img, ENOTSUP, "fast zero: part of a cluster "
                       "needs a copy on write");
  return write_zeros (q, len, offset);
}

/* New values of the entries of a zero or trim: what the old entry
 * becomes.  `plain`: drop the host cluster, else keep it (ZERO flag). */
enum entry_op { OP_ZERO_KEEP, OP_ZERO_PLAIN, OP_UNMAP };

static uint64_t
new_entry (struct qcow2 *q, uint64_t old, enum entry_op op, bool *drop)
{
  const char *why;
  enum qcow2_kind k = qcow2_entry_kind (q, old, q->file_end, &why);

  *drop = false;
  if (op == OP_ZERO_KEEP && (k == Q_DATA || k == Q_ZERO))
    return old | QCOW2_ZERO;
  *drop = k == Q_DATA || k == Q_ZERO || k == Q_COMPRESSED;
  return op == OP_UNMAP ? 0 : QCOW2_ZERO;
}

/* Changes the entries of whole clusters of run r at offset (len bytes).
 * Called with q->lock held, returns with it released; *done as for
 * allocate_run. */
static int
change_entries (struct qcow2 *q, struct qcow2_run *r, uint64_t offset,
                uint64_t len, enum entry_op op, uint64_t *done)
{
  uint64_t first = qcow2_cluster_of (q, offset);
  uint64_t n = len >> q->cluster_bits, i;
  int ret;

  *done = 0;
  ret = prepare_change (q, r, first, &n, false, false);
  for (i = 0; ret == 0 && i < n; i++) {
    uint64_t old = qcow2_l2_get (q, r->l2, r->l2_index + i), v;
    bool drop;
    v = new_entry (q, old, op, &drop);
    if (drop && (ret = qcow2_drop_entry (q, old, true)) == -1)
      break;
    if (v != old)
      qcow2_l2_set (q, r->l2, r->l2_index + i, v);
  }
  if (ret == 0)
    *done = n << q->cluster_bits;
  pthread_mutex_unlock (&q->lock);
  return ret == -1 ? -1 : 0;
}

/* Whole clusters of run r at offset, len bytes (a multiple of the
 * cluster size).  Called with q->lock held, returns with it released. */
static int
zero_whole (struct qcow2 *q, struct qcow2_run *r, uint64_t offset,
            uint64_t len, unsigned flags, uint64_t *done)
{
  bool below_zero;

  *done = len;
  if (r->kind == Q_ZERO && !(flags & IMAGE_MAY_TRIM)) {
    pthread_mutex_unlock (&q->lock);
    return 0;
  }
  if (r->kind == Q_UNALLOC && (r->l2 == NULL || q->h.version < 3) &&
      reads_zero_below (q, offset, len)) {
    pthread_mutex_unlock (&q->lock);    /* reads as zeros already */
    return 0;
  }
  if (q->h.version >= 3)
    return change_entries (q, r, offset, len,
                           (flags & IMAGE_MAY_TRIM) ? OP_ZERO_PLAIN
                                                    : OP_ZERO_KEEP, done);
  /* Version 2: unmap where nothing shows through, else zeros. */
  below_zero = reads_zero_below (q, offset, len);
  if (below_zero && r->kind != Q_UNALLOC)
    return change_entries (q, r, offset, len, OP_UNMAP, done);
  pthread_mutex_unlock (&q->lock);
  if (r->kind == Q_DATA && r->in_place)
    return zero_in_place (q, r->host, len, flags);
  if (flags & IMAGE_FAST_ZERO)
    return image_errf (q->img, ENOTSUP, "fast zero: version 2 images "
                       "have no zero clusters");
  return write_zeros (q, len, offset);
}

/* A fast zero must fail before it changes anything if any part of it
 * would need a copy on write. */
static int
fast_zero_possible (struct qcow2 *q, uint64_t count, uint64_t offset)
{
  uint64_t cs = q->cluster_size;

  while (count > 0) {
    struct qcow2_run r;
    uint64_t head, whole;

    if (lookup_run_locked (q, offset, count, &r) == -1)
      return -1;
    if (r.kind == Q_INVALID)
      return invalid_error (q, &r, offset);
    head = IS_ALIGNED (offset, cs) ? 0 : MIN (r.len, cs - (offset & (cs - 1)));
    whole = ROUND_DOWN (r.len - head, cs);
    if ((head && !partial_is_fast (q, &r, head, offset)) ||
        (r.len - head - whole &&
         !partial_is_fast (q, &r, r.len - head - whole,
                           offset + head + whole)) ||
        (whole && q->h.version < 3 && !(r.kind == Q_DATA && r.in_place) &&
         !reads_zero_below (q, offset + head, whole)))
      return image_errf (q->img, ENOTSUP, "fast zero: part of the range "
                         "needs a copy on write");
    offset += r.len;
    count -= r.len;
  }
  return 0;
}

int
qcow2_zero (struct image *img, uint64_t count, uint64_t offset,
            unsigned flags)
{
  struct qcow2 *q = img->priv;
  uint64_t cs = q->cluster_size;

  if ((flags & IMAGE_FAST_ZERO) && fast_zero_possible (q, count, offset) == -1)
    return -1;
  while (count > 0) {
    struct qcow2_run r;
    uint64_t done, in;
    int ret;

    pthread_mutex_lock (&q->lock);
    if (lookup_run (q, offset, count, &r) == -1) {
      pthread_mutex_unlock (&q->lock);
      return -1;
    }
    if (r.kind == Q_INVALID) {
      pthread_mutex_unlock (&q->lock);
      return invalid_error (q, &r, offset);
    }
    in = offset & (cs - 1);
    if (in || r.len < cs) {
      done = in ? MIN (r.len, cs - in) : r.len;
      pthread_mutex_unlock (&q->lock);
      ret = zero_partial (q, &r, done, offset, flags);
    }
    else
      ret = zero_whole (q, &r, offset, ROUND_DOWN (r.len, cs), flags, &done);
    if (ret == -1)
      return -1;
    offset += done;
    count -= done;
  }
  return finish_write (q, flags);
}

/* Whole clusters of run r: unmapped (version 3: ZERO over a backing
 * file), or for version 2 over a backing file, holes punched in our own
 * clusters.  Called with q->lock held, returns with it released. */
static int
trim_whole (struct qcow2 *q, struct qcow2_run *r, uint64_t offset,
            uint64_t len, uint64_t *done)
{
  struct image *b = q->img->backing;
  bool shows_through = b && offset < b->size;

  *done = len;
  if (r->kind == Q_UNALLOC || (r->kind == Q_ZERO && shows_through)) {
    pthread_mutex_unlock (&q->lock);
    return 0;
  }
  if (!shows_through)
    return change_entries (q, r, offset, len, OP_UNMAP, done);
  if (q->h.version >= 3)
    return change_entries (q, r, offset, len, OP_ZERO_PLAIN, done);
  pthread_mutex_unlock (&q->lock);
  image_host_may_have_holes (q->img);
  if (r->kind == Q_DATA && r->in_place &&
      host_punch_hole (q->img->fd, len, r->host) == -1 && errno != EOPNOTSUPP)
    return image_err_sys (q->img, "punch hole");
  return 0;
}

int
qcow2_trim (struct image *img, uint64_t count, uint64_t offset,
            unsigned flags)
{
  struct qcow2 *q = img->priv;
  uint64_t cs = q->cluster_size;

  while (count > 0) {
    struct qcow2_run r;
    uint64_t done, in;
    int ret = 0;

    pthread_mutex_lock (&q->lock);
    if (lookup_run (q, offset, count, &r) == -1) {
      pthread_mutex_unlock (&q->lock);
      return -1;
    }
    if (r.kind == Q_INVALID) {
      pthread_mutex_unlock (&q->lock);
      return invalid_error (q, &r, offset);
    }
    in = offset & (cs - 1);
    if (in || r.len < cs) {
      /* Part of a cluster: give space back only under our own data. */
      done = in ? MIN (r.len, cs - in) : r.len;
      pthread_mutex_unlock (&q->lock);
      image_host_may_have_holes (img);
      if (r.kind == Q_DATA && r.in_place &&
          host_punch_hole (img->fd, done, r.host) == -1 &&
          errno != EOPNOTSUPP)
        return image_err_sys (img, "punch hole");
    }
    else
      ret = trim_whole (q, &r, offset, ROUND_DOWN (r.len, cs), &done);
    if (ret == -1)
      return -1;
    offset += done;
    count -= done;
  }
  return (flags & IMAGE_FUA) ? qcow2_writeback (q, false) : 0;
}

/* ---- block status ---------------------------------------------------- */

/* Whether extents should split data clusters where the host file has
 * holes (and call those parts zero).  qemu does so only for an image that
 * looks preallocated: more clusters with a reference than blocks the
 * host file occupies (a tenth more, or two).  We decide the same way, once
 * per open, so that map and NBD block status agree with qemu's.  Called
 * with q->lock held. */
static bool
holes_read_zero (struct qcow2 *q)
{
  uint64_t length, allocated, real, threshold, count = 0, c, end, v;
  struct stat st;

  if (q->holes_read_zero >= 0)
    return q->holes_read_zero;
  q->holes_read_zero = 0;
  if (fstat (q->img->fd, &st) == -1 || host_file_size (q->img->fd, &length))
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

/* ---- (status proper) ------------------------------------------------------ */

int
qcow2_block_status (struct image *img, uint64_t offset, uint64_t count,
                    struct drv_status *st)
{
  struct qcow2 *q = img->priv;
  struct qcow2_run r;

  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->lock);
    if (lookup_run (q, offset, count, &r) == -1)
      return -1;
    st->host_checked = !holes_read_zero (q);
  }
  st->length = r.len;
  st->host_offset = -1;
  switch (r.kind) {
  case Q_DATA:
    st->kind = DRV_DATA;
    st->host_offset = (int64_t) r.host;
    break;
  case Q_COMPRESSED:
    st->kind = DRV_DATA;
    st->compressed = true;
    break;
  case Q_ZERO:
    st->kind = DRV_ZERO;
    break;
  case Q_UNALLOC:
    st->kind = DRV_UNALLOCATED;
    break;
  case Q_INVALID:
    return invalid_error (q, &r, offset);
  }
  return 0;
}
