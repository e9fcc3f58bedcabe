/* SPDX-License-Identifier: BSD-3-Clause */
/* QED I/O paths: reads, writes (in place, or allocating with copy on
 * write), write zeroes, trim and block status.
 *
 * Every path walks the request as "runs": consecutive guest clusters in
 * one L2 table with the same state (and, for data, contiguous in the
 * file).  The lookup of a run holds q->lock; the data I/O does not.
 *
 * An allocating write of a run of n clusters:
 *
 *   1. under the lock: the L2 table exists (else it is created first, see
 *      qed_create_l2), no other allocation covers these clusters (else
 *      wait), NEED_CHECK is durable (else set it first); then reserve n
 *      clusters at the end of the file and record the allocation;
 *   2. without the lock: write the guest data in one pwritev, and around
 *      it the rest of the first and last cluster where an unallocated
 *      cluster reads through to backing data.  Where the rest reads as
 *      zeros (a zero cluster, no backing data there) it is left a hole:
 *      the file was grown past the new clusters beforehand
 *      (image_grow_file, in steps; a clean close cuts it back to
 *      file_end), so that they lie inside it - qemu rounds a QED file's
 *      size down to a cluster and refuses entries past it;
 *   3. under the lock: point the L2 entries at the new clusters (the
 *      table is now dirty in the cache; writeback makes the data durable
 *      before the entries, see qed-table.c), end the allocation, wake any
 *      waiter.
 *
 * A zero cluster (entry 1) is only made for whole clusters that read
 * through to a backing image; allocated clusters are zeroed and trimmed
 * in place (hole punching), so no cluster ever loses its last reference
 * and no freed cluster is handed out again.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cleanup.h"
#include "minmax.h"
#include "qed.h"
#include "rounding.h"

struct qed_run {
  enum qed_entry_kind kind;
  uint64_t len;                 /* bytes from the request's offset */
  uint64_t host;                /* QED_E_DATA: file offset of that byte */
  struct mc_entry *l2;          /* NULL: the L1 entry is empty */
  uint64_t l1_index, l2_index;  /* of the first cluster */
  uint64_t entry;               /* the first cluster's entry, for errors */
  bool bad_table;               /* QED_E_INVALID: the L1 entry is bad */
};

/* Describes the run at offset, at most count bytes.  Called with q->lock
 * held (a cache miss reads the table under it, or with cached_only fails
 * with EAGAIN). */
static int
lookup (struct qed *q, uint64_t offset, uint64_t count, bool cached_only,
        struct qed_run *r)
{
  uint64_t cs = q->cluster_size;
  uint64_t c = qed_cluster_of (q, offset);
  uint64_t in_cluster = offset & (cs - 1);
  uint64_t want, n = 1, l2_offset;

  r->l1_index = qed_l1_index (q, c);
  r->l2_index = qed_l2_index (q, c);
  r->l2 = NULL;
  r->host = 0;
  r->bad_table = false;
  /* Clusters the request touches, within this L2 table. */
  want = MIN (DIV_ROUND_UP (in_cluster + count, cs),
              q->table_entries - r->l2_index);

  l2_offset = qed_l1_get (q, r->l1_index);
  r->entry = l2_offset;
  if (l2_offset == 0) {
    r->kind = QED_E_UNALLOC;
    n = want;
  }
  else if (!qed_table_offset_valid (q, l2_offset, q->file_end)) {
    r->kind = QED_E_INVALID;
    r->bad_table = true;
  }
  else {
    uint64_t e0;
    if (cached_only) {
      r->l2 = mc_find (q->l2_cache, l2_offset);
      if (r->l2 == NULL) {
        errno = EAGAIN;
        return -1;
      }
    }
    else if (qed_get_l2 (q, l2_offset, &r->l2) == -1)
      return -1;
    e0 = qed_l2_get (r->l2, r->l2_index);
    r->entry = e0;
    r->kind = qed_entry_kind (q, e0, q->file_end);
    if (r->kind != QED_E_INVALID)
      for (; n < want; n++) {
        uint64_t en = qed_l2_get (r->l2, r->l2_index + n);
        if (qed_entry_kind (q, en, q->file_end) != r->kind)
          break;
        if (r->kind == QED_E_DATA && en != e0 + n * cs)
          break;
      }
    if (r->kind == QED_E_DATA)
      r->host = e0 + in_cluster;
  }
  r->len = MIN (count, n * cs - in_cluster);
  return 0;
}

static int
lookup_run (struct qed *q, uint64_t offset, uint64_t count,
            struct qed_run *r)
{
  return lookup (q, offset, count, false, r);
}

static int
lookup_run_locked (struct qed *q, uint64_t offset, uint64_t count,
                   struct qed_run *r)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->lock);
  return lookup_run (q, offset, count, r);
}

static int
invalid_error (struct qed *q, const struct qed_run *r, uint64_t offset)
{
  if (r->bad_table)
    return image_errf (q->img, EIO, "L2 table at 0x%" PRIx64 " (for offset %"
                       PRIu64 ") is invalid: run cowbd-img check -r all",
                       r->entry, offset);
  return image_errf (q->img, EIO, "cluster entry 0x%" PRIx64 " (for offset %"
                     PRIu64 ") is invalid: run cowbd-img check -r all",
                     r->entry, offset);
}

/* ---- read ---------------------------------------------------------------- */

int
qed_pread (struct image *img, void *buf, size_t count, uint64_t offset)
{
  struct qed *q = img->priv;
  uint8_t *p = buf;

  while (count > 0) {
    struct qed_run r;

    if (lookup_run_locked (q, offset, count, &r) == -1)
      return -1;
    switch (r.kind) {
    case QED_E_DATA:
      if (host_pread (img->fd, p, r.len, r.host) == -1)
        return image_errf (img, errno, "reading offset %" PRIu64 ": %s",
                           offset, strerror (errno));
      break;
    case QED_E_ZERO:
      memset (p, 0, r.len);
      break;
    case QED_E_UNALLOC:
      if (image_read_backing (img, p, r.len, offset) == -1)
        return -1;
      break;
    case QED_E_INVALID:
      return invalid_error (q, &r, offset);
    }
    p += r.len;
    offset += r.len;
    count -= r.len;
  }
  return 0;
}

/* Looks the run up without waiting: a contended lock or a table not in
 * the cache is EAGAIN. */
static int
lookup_run_nowait (struct qed *q, uint64_t offset, uint64_t count,
                   struct qed_run *r)
{
  int ret;

  if (pthread_mutex_trylock (&q->lock) != 0) {
    errno = EAGAIN;
    return -1;
  }
  ret = lookup (q, offset, count, true, r);
  pthread_mutex_unlock (&q->lock);
  return ret;
}

int
qed_pread_nowait (struct image *img, void *buf, size_t count,
                  uint64_t offset)
{
  struct qed *q = img->priv;
  uint8_t *p = buf;

  while (count > 0) {
    struct qed_run r;
    int ret = 0;

    if (lookup_run_nowait (q, offset, count, &r) == -1)
      return -1;
    switch (r.kind) {
    case QED_E_DATA:
      ret = host_pread_nowait (img, p, r.len, r.host);
      break;
    case QED_E_ZERO:
      memset (p, 0, r.len);
      break;
    case QED_E_UNALLOC:
      ret = image_read_backing_nowait (img, p, r.len, offset);
      break;
    case QED_E_INVALID:
      ret = -1;
      break;
    }
    if (ret == -1)
      return -1;
    p += r.len;
    offset += r.len;
    count -= r.len;
  }
  return 0;
}

static int write_range (struct image *img, const void *buf, size_t count,
                        uint64_t offset, unsigned flags, bool nowait);

/* With the whole chain in memory nothing waits for I/O: the write runs
 * as usual, refusing only what would wait for another thread.  Otherwise
 * only an overwrite of data clusters contiguous in the file, in one
 * RWF_NOWAIT call. */
int
qed_pwrite_nowait (struct image *img, const void *buf, size_t count,
                   uint64_t offset, unsigned flags)
{
  struct qed *q = img->priv;
  struct qed_run r;

  if (img->chain_in_memory)
    return write_range (img, buf, count, offset, flags, true);
  if (lookup_run_nowait (q, offset, count, &r) == -1)
    return -1;
  if (r.kind != QED_E_DATA || r.len != count) {
    errno = EAGAIN;
    return -1;
  }
  return host_pwrite_nowait (img, buf, count, r.host);
}

/* ---- allocation ------------------------------------------------------------ */

/* What prepare_change does instead of waiting, with nowait. */
static int
must_wait (void)
{
  errno = EAGAIN;
  return -1;
}

/* Makes clusters [*first, *first + *n) free to change: the L2 table
 * exists, no allocation in flight touches them (the run is shortened to
 * stop before one that starts later), NEED_CHECK is durable and nothing
 * stops writes.  Called with q->lock held; returns 1 when it had to drop
 * the lock (the caller looks the run up again), 0 when ready, -1 on error
 * (lock still held) or, with nowait, EAGAIN where it would have waited. */
static int
prepare_change (struct qed *q, struct qed_run *r, uint64_t first,
                uint64_t *n, bool nowait)
{
  struct inflight *a;

  if (q->broken)
    return image_errf (q->img, EIO, "an earlier metadata write failed; "
                       "the image needs a check");
  a = inflight_find (q->allocs, first, *n);
  if (nowait && (r->l2 == NULL || q->creating_table ||
                 (a && a->first <= first) ||
                 !__atomic_load_n (&q->need_check_on_disk,
                                   __ATOMIC_ACQUIRE)))
    return must_wait ();
  if (r->l2 == NULL) {
    int ret;
    pthread_mutex_unlock (&q->lock);
    ret = qed_create_l2 (q, r->l1_index);
    pthread_mutex_lock (&q->lock);
    return ret == -1 ? -1 : 1;
  }
  if (q->creating_table) {
    pthread_cond_wait (&q->cond, &q->lock);
    return 1;
  }
  if (a && a->first <= first) {
    pthread_cond_wait (&q->cond, &q->lock);
    return 1;
  }
  if (a)
    *n = a->first - first;
  if (!__atomic_load_n (&q->need_check_on_disk, __ATOMIC_ACQUIRE)) {
    int ret;
    pthread_mutex_unlock (&q->lock);
    ret = qed_set_need_check (q, true);
    pthread_mutex_lock (&q->lock);
    return ret == -1 ? -1 : 1;
  }
  return 0;
}

/* One side of a new cluster run that the guest data does not cover:
 * the backing image's data into *buf (malloc'd), or *buf NULL where that
 * side reads as zeros and is left a hole. */
static int
fill_side (struct qed *q, bool from_backing, uint64_t guest_offset,
           uint64_t len, uint8_t **buf)
{
  *buf = NULL;
  if (len == 0 || !from_backing ||
      image_backing_is_zero (q->img, guest_offset, len))
    return 0;
  *buf = malloc (len);
  if (*buf == NULL)
    return image_errf (q->img, ENOMEM, "out of memory");
  return image_read_backing (q->img, *buf, len, guest_offset);
}

/* Writes a new run of n clusters at host offset `host`: the guest data
 * [offset, offset + len) and the backing data around it.  Called without
 * the lock. */
static int
write_new_clusters (struct qed *q, const uint8_t *buf, uint64_t len,
                    uint64_t offset, uint64_t first, uint64_t n,
                    uint64_t host, bool from_backing)
{
  uint64_t cs = q->cluster_size;
  uint64_t head = offset - first * cs;
  uint64_t tail = n * cs - head - len;
  uint64_t start = host + head;
  CLEANUP_FREE uint8_t *head_buf = NULL;
  CLEANUP_FREE uint8_t *tail_buf = NULL;
  struct iovec iov[3];
  int iovcnt = 0;

  if (fill_side (q, from_backing, first * cs, head, &head_buf) == -1 ||
      fill_side (q, from_backing, offset + len, tail, &tail_buf) == -1)
    return -1;
  if (head_buf) {
    iov[iovcnt++] = (struct iovec) { head_buf, head };
    start = host;
  }
  iov[iovcnt++] = (struct iovec) { (void *) buf, len };
  if (tail_buf)
    iov[iovcnt++] = (struct iovec) { tail_buf, tail };
  if (host_pwritev (q->img->fd, iov, iovcnt, start) == -1)
    return image_errf (q->img, errno, "writing new clusters at 0x%" PRIx64
                       ": %s", host, strerror (errno));
  return 0;
}

/* A failed allocation may have written part of its clusters: the space
 * goes back only by truncating the file (new clusters must read as
 * zeros); otherwise it stays a leak for the next open's check.  Called
 * with q->lock held. */
static void
give_back (struct qed *q, uint64_t host, uint64_t n)
{
  if (q->file_end == host + n * q->cluster_size &&
      ftruncate (q->img->fd, (off_t) host) == 0)
    q->file_end = q->file_length = host;
  else
    q->leaked = true;
}

/* Allocates the run r at offset (count bytes of it) and writes buf there.
 * Called with q->lock held; returns with it released.  *done is the number
 * of bytes written, 0 when the run has to be looked up again. */
static int
allocate_run (struct qed *q, struct qed_run *r, const uint8_t *buf,
              uint64_t offset, bool nowait, uint64_t *done)
{
  uint64_t cs = q->cluster_size;
  uint64_t first = qed_cluster_of (q, offset);
  uint64_t n = DIV_ROUND_UP ((offset & (cs - 1)) + r->len, cs);
  struct inflight a;
  uint64_t host, len, i;
  struct mc_entry *l2;
  int ret;

  *done = 0;
  ret = prepare_change (q, r, first, &n, nowait);
  if (ret != 0) {
    pthread_mutex_unlock (&q->lock);
    return ret == 1 ? 0 : -1;
  }
  len = MIN (r->len, n * cs - (offset & (cs - 1)));
  host = q->file_end;
  if (image_grow_file (q->img, &q->file_length, host + n * cs, cs) == -1) {
    pthread_mutex_unlock (&q->lock);
    return -1;
  }
  q->file_end += n * cs;
  inflight_add (&q->allocs, &a, first, n);
  l2 = r->l2;
  l2->pins++;
  pthread_mutex_unlock (&q->lock);

  ret = write_new_clusters (q, buf, len, offset, first, n, host,
                            r->kind == QED_E_UNALLOC);

  pthread_mutex_lock (&q->lock);
  if (ret == 0) {
    for (i = 0; i < n; i++)
      qed_l2_set (l2, r->l2_index + i, host + i * cs);
    *done = len;
  }
  else
    give_back (q, host, n);
  l2->pins--;
  inflight_remove (&q->allocs, &a);
  pthread_cond_broadcast (&q->cond);
  pthread_mutex_unlock (&q->lock);
  return ret;
}

/* ---- write ----------------------------------------------------------------- */

/* Writes back if the cache grew past its bound (or FUA asks for it). */
static int
finish_write (struct qed *q, unsigned flags)
{
  bool over;

  if (flags & IMAGE_FUA)
    return qed_writeback (q);
  pthread_mutex_lock (&q->lock);
  over = mc_over_budget (q->l2_cache);
  pthread_mutex_unlock (&q->lock);
  return over ? qed_writeback (q) : 0;
}

int
qed_pwrite (struct image *img, const void *buf, size_t count,
            uint64_t offset, unsigned flags)
{
  return write_range (img, buf, count, offset, flags, false);
}

static int
write_range (struct image *img, const void *buf, size_t count,
             uint64_t offset, unsigned flags, bool nowait)
{
  struct qed *q = img->priv;
  const uint8_t *p = buf;

  while (count > 0) {
    struct qed_run r;
    uint64_t done;

    pthread_mutex_lock (&q->lock);
    if (lookup_run (q, offset, count, &r) == -1) {
      pthread_mutex_unlock (&q->lock);
      return -1;
    }
    switch (r.kind) {
    case QED_E_DATA:
      pthread_mutex_unlock (&q->lock);
      if (host_pwrite (img->fd, p, r.len, r.host) == -1)
        return image_errf (img, errno, "writing offset %" PRIu64 ": %s",
                           offset, strerror (errno));
      done = r.len;
      break;
    case QED_E_INVALID:
      pthread_mutex_unlock (&q->lock);
      return invalid_error (q, &r, offset);
    default:
      if (allocate_run (q, &r, p, offset, nowait, &done) == -1)
        return -1;
      break;
    }
    p += done;
    offset += done;
    count -= done;
  }
  return finish_write (q, flags);
}

/* ---- write zeroes -------------------------------------------------------------- */

/* Zeros an allocated range in place: a hole where allowed, else zeros
 * written by fallocate (or, unless fast, by plain writes). */
static int
zero_in_place (struct qed *q, uint64_t host, uint64_t len, unsigned flags)
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

/* Makes the whole clusters of run r starting at offset zero clusters.
 * Called with q->lock held, returns with it released; *done as for
 * allocate_run. */
static int
make_zero_clusters (struct qed *q, struct qed_run *r, uint64_t offset,
                    uint64_t *done)
{
  uint64_t first = qed_cluster_of (q, offset);
  uint64_t n = r->len >> q->cluster_bits, i;
  int ret;

  *done = 0;
  ret = prepare_change (q, r, first, &n, false);
  if (ret == 0) {
    for (i = 0; i < n; i++)
      qed_l2_set (r->l2, r->l2_index + i, QED_ZERO_CLUSTER);
    *done = n << q->cluster_bits;
  }
  pthread_mutex_unlock (&q->lock);
  return ret == -1 ? -1 : 0;
}

/* Writes zeros into part of a cluster that reads from the backing image:
 * an allocating write of zeros, unless the backing image reads as zeros
 * there already. */
static int
zero_partial (struct qed *q, uint64_t len, uint64_t offset, unsigned flags)
{
  if (image_backing_is_zero (q->img, offset, len))
    return 0;
  if (flags & IMAGE_FAST_ZERO)
    return image_errf (q->img, ENOTSUP, "fast zero: part of a cluster over "
                       "backing data needs a copy on write");
  while (len > 0) {
    uint64_t m = MIN (len, (uint64_t) HOST_ZEROS_SIZE);
    if (qed_pwrite (q->img, host_zeros, m, offset, 0) == -1)
      return -1;
    offset += m;
    len -= m;
  }
  return 0;
}

/* A fast zero must fail before it changes anything if any part of it
 * would need a copy on write. */
static int
fast_zero_possible (struct qed *q, uint64_t count, uint64_t offset)
{
  uint64_t cs = q->cluster_size;

  while (count > 0) {
    struct qed_run r;
    uint64_t head, tail;

    if (lookup_run_locked (q, offset, count, &r) == -1)
      return -1;
    if (r.kind == QED_E_UNALLOC && q->img->backing) {
      head = MIN (r.len, ROUND_UP (offset, cs) - offset);
      tail = (offset + r.len) & (cs - 1);
      if ((head && head < cs && !IS_ALIGNED (offset, cs) &&
           !image_backing_is_zero (q->img, offset, head)) ||
          (tail && r.len > head &&
           !image_backing_is_zero (q->img, offset + r.len - tail, tail)))
        return image_errf (q->img, ENOTSUP, "fast zero: part of a cluster "
                           "over backing data needs a copy on write");
    }
    offset += r.len;
    count -= r.len;
  }
  return 0;
}

/* The unallocated run r at offset reads from a backing image: whole
 * clusters become zero clusters, partial ones are written.  Returns the
 * bytes handled in *done. */
static int
zero_unallocated (struct qed *q, struct qed_run *r, uint64_t offset,
                  unsigned flags, uint64_t *done)
{
  uint64_t cs = q->cluster_size;
  uint64_t head = IS_ALIGNED (offset, cs) ? 0
                  : MIN (r->len, ROUND_UP (offset, cs) - offset);

  if (head) {
    pthread_mutex_unlock (&q->lock);
    *done = head;
    return zero_partial (q, head, offset, flags);
  }
  if (r->len < cs) {
    pthread_mutex_unlock (&q->lock);
    *done = r->len;
    return zero_partial (q, r->len, offset, flags);
  }
  return make_zero_clusters (q, r, offset, done);
}

int
qed_zero (struct image *img, uint64_t count, uint64_t offset,
          unsigned flags)
{
  struct qed *q = img->priv;

  if ((flags & IMAGE_FAST_ZERO) && fast_zero_possible (q, count, offset) == -1)
    return -1;
  while (count > 0) {
    struct qed_run r;
    uint64_t done = 0;
    int ret = 0;

    pthread_mutex_lock (&q->lock);
    if (lookup_run (q, offset, count, &r) == -1) {
      pthread_mutex_unlock (&q->lock);
      return -1;
    }
    switch (r.kind) {
    case QED_E_DATA:
      pthread_mutex_unlock (&q->lock);
      ret = zero_in_place (q, r.host, r.len, flags);
      done = r.len;
      break;
    case QED_E_ZERO:
      pthread_mutex_unlock (&q->lock);
      done = r.len;
      break;
    case QED_E_INVALID:
      pthread_mutex_unlock (&q->lock);
      return invalid_error (q, &r, offset);
    case QED_E_UNALLOC:
      if (img->backing == NULL || offset >= img->backing->size) {
        pthread_mutex_unlock (&q->lock);  /* reads as zeros already */
        done = r.len;
      }
      else
        ret = zero_unallocated (q, &r, offset, flags, &done);
      break;
    }
    if (ret == -1)
      return -1;
    offset += done;
    count -= done;
  }
  return finish_write (q, flags);
}

/* ---- trim ------------------------------------------------------------------- */

int
qed_trim (struct image *img, uint64_t count, uint64_t offset,
          unsigned flags)
{
  struct qed *q = img->priv;

  while (count > 0) {
    struct qed_run r;

    if (lookup_run_locked (q, offset, count, &r) == -1)
      return -1;
    /* Space goes back to the host; the cluster stays mapped, so nothing
     * is leaked and nothing freed can be reused. */
    if (r.kind == QED_E_DATA) {
      image_host_may_have_holes (img);
      if (host_punch_hole (img->fd, r.len, r.host) == -1 &&
          errno != EOPNOTSUPP)
        return image_err_sys (img, "punch hole");
    }
    offset += r.len;
    count -= r.len;
  }
  return (flags & IMAGE_FUA) ? qed_writeback (q) : 0;
}

/* ---- block status ----------------------------------------------------------- */

int
qed_block_status (struct image *img, uint64_t offset, uint64_t count,
                  struct drv_status *st)
{
  struct qed *q = img->priv;
  struct qed_run r;

  if (lookup_run_locked (q, offset, count, &r) == -1)
    return -1;
  st->length = r.len;
  st->host_offset = -1;
  switch (r.kind) {
  case QED_E_DATA:
    st->kind = DRV_DATA;
    st->host_offset = (int64_t) r.host;
    break;
  case QED_E_ZERO:
    st->kind = DRV_ZERO;
    break;
  case QED_E_UNALLOC:
    st->kind = DRV_UNALLOCATED;
    break;
  case QED_E_INVALID:
    return invalid_error (q, &r, offset);
  }
  return 0;
}
