/* SPDX-License-Identifier: BSD-3-Clause */
/* qcow2 compressed clusters: reading them, and writing whole clusters
 * compressed (image_write_compressed).
 *
 * A compressed cluster is a byte range of the file (see
 * qcow2_compressed_range: its end is only known to the sector, so the
 * range may carry a few bytes of the next compressed cluster) holding:
 *
 *   zlib (compression_type 0): a raw deflate stream, window 4 KiB
 *        (windowBits -12), as qemu writes it;
 *   zstd (compression_type 1): one or more zstd frames.
 *
 * Either must produce exactly one cluster; anything else (a stream that
 * ends early, or that would produce more) is corruption: EIO naming the
 * cluster.  A guest write into a compressed cluster allocates a new
 * cluster (cow.c, qcow2-cluster.c).
 *
 * The last cluster decompressed is kept (zc), so that small sequential
 * reads through a compressed cluster inflate it once.
 *
 * Writing (qemu's qcow2_co_pwritev_compressed, same formats and levels):
 * the calling thread compresses the cluster into at most cluster_size - 1
 * bytes (zlib level 6 / zstd level 3, contexts kept per thread); if it
 * does not fit, the cluster is written uncompressed through the ordinary
 * write path.  Otherwise cow_write_compressed takes the allocating path
 * of any write (dirty bit, L2 table, refcount coverage, the cluster
 * recorded in flight) with zreserve and zlink below.
 *
 * Packing, as qemu's qcow2_alloc_bytes: compressed data is appended byte
 * by byte after the previous compressed cluster (zfree), so one host
 * cluster holds several, and one may run over into the next host
 * cluster when that is the last of the file:
 *
 *     host cluster H                          host cluster H+1 (new)
 *   +----------+----------+-------------+   +--------+----------------
 *   | A's data | B's data | C's data ...|...| C's end|  (zfree)
 *   +----------+----------+-------------+   +--------+----------------
 *   refcount(H) = 3 (A, B, C)               refcount(H+1) = 1 (C)
 *
 * Each compressed cluster counts one reference on every host cluster its
 * bytes touch; a cluster whose count is 0 (freed) or at the maximum, or
 * that no longer lies in the file, is not continued: the data starts a
 * new cluster.  The L2 descriptor is the byte offset and the number of
 * further 512-byte sectors the data touches.  Ordering is the allocating
 * write's: the counts are raised before the entry is set, the data is
 * written before it, and the writeback syncs both before the L2 table
 * goes out (rule 1).
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#ifdef HAVE_ZSTD
#include <zstd.h>
#include <zstd_errors.h>
#endif

#include "cleanup.h"
#include "minmax.h"
#include "qcow2.h"
#include "rounding.h"

int
qcow2_zcache_init (struct qcow2 *q)
{
  q->zc.data = malloc (q->cluster_size);
  /* Up to 2 * cluster_size bytes of sectors (csize_mask + 1 of them). */
  q->zc.in = malloc ((q->csize_mask + 1) * 512);
  if (q->zc.data == NULL || q->zc.in == NULL)
    return error_file (q->img, ENOMEM, "out of memory");
  return 0;
}

void
qcow2_zcache_free (struct qcow2 *q)
{
  free (q->zc.data);
  free (q->zc.in);
  pthread_mutex_destroy (&q->zc.lock);
}

static int
inflate_zlib (const uint8_t *in, size_t in_len, uint8_t *out,
              size_t out_len)
{
  z_stream z = { 0 };
  int r;

  if (inflateInit2 (&z, -12) != Z_OK)
    return -1;
  z.next_in = (Bytef *) in;
  z.avail_in = (uInt) in_len;
  z.next_out = out;
  z.avail_out = (uInt) out_len;
  r = inflate (&z, Z_FINISH);
  inflateEnd (&z);
  /* The input may go on past the stream (sector padding, the next
   * cluster's data): only a full cluster out counts. */
  return (r == Z_STREAM_END || r == Z_BUF_ERROR) && z.avail_out == 0
         ? 0 : -1;
}

#ifdef HAVE_ZSTD
static int
inflate_zstd (const uint8_t *in, size_t in_len, uint8_t *out,
              size_t out_len)
{
  ZSTD_DCtx *d = ZSTD_createDCtx ();
  ZSTD_inBuffer ib = { in, in_len, 0 };
  ZSTD_outBuffer ob = { out, out_len, 0 };
  size_t r = 1;
  int ret = 0;

  if (d == NULL)
    return -1;
  /* Frame after frame until the cluster is full; a step that makes no
   * progress is a damaged stream. */
  while (ob.pos < ob.size) {
    size_t in_pos = ib.pos, out_pos = ob.pos;
    r = ZSTD_decompressStream (d, &ob, &ib);
    if (ZSTD_isError (r) || (ib.pos == in_pos && ob.pos == out_pos)) {
      ret = -1;
      break;
    }
  }
  /* A frame not finished here would produce more than a cluster. */
  if (ret == 0 && r != 0)
    ret = -1;
  ZSTD_freeDCtx (d);
  return ret;
}
#endif

/* Reads and inflates; called with zc.lock held. */
static int
decompress (struct qcow2 *q, uint64_t entry, uint8_t *out)
{
  uint64_t off, len;
  int r;

  qcow2_compressed_range (q, entry, &off, &len);
  if (source_pread (q->img->src, q->zc.in, len, off) == -1)
    return error_file (q->img, errno, "reading compressed cluster at 0x%"
                       PRIx64 ": %s", off, strerror (errno));
#ifdef HAVE_ZSTD
  if (q->h.compression_type == QCOW2_COMPRESSION_ZSTD)
    r = inflate_zstd (q->zc.in, len, out, q->cluster_size);
  else
#endif
    r = inflate_zlib (q->zc.in, len, out, q->cluster_size);
  if (r == -1)
    return error_file (q->img, EIO, "compressed cluster at 0x%" PRIx64
                       " (%" PRIu64 " bytes) does not decompress to one "
                       "cluster: run cowbd-img check", off, len);
  return 0;
}

int
qcow2_read_compressed (struct qcow2 *q, uint64_t entry, uint8_t *out)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->zc.lock);

  if (q->zc.entry != entry) {
    q->zc.entry = 0;
    if (decompress (q, entry, q->zc.data) == -1)
      return -1;
    q->zc.entry = entry;
  }
  memcpy (out, q->zc.data, q->cluster_size);
  return 0;
}

/* ---- compressing -------------------------------------------------------- */

/* A thread's compression contexts, made on first use and freed when the
 * thread exits. */
struct zctx {
  z_stream z;
  bool z_ready;
#ifdef HAVE_ZSTD
  ZSTD_CCtx *zstd;
#endif
};

static pthread_key_t zctx_key;
static pthread_once_t zctx_once = PTHREAD_ONCE_INIT;

static void
zctx_free (void *p)
{
  struct zctx *x = p;

  if (x->z_ready)
    deflateEnd (&x->z);
#ifdef HAVE_ZSTD
  ZSTD_freeCCtx (x->zstd);
#endif
  free (x);
}

static void
zctx_key_init (void)
{
  pthread_key_create (&zctx_key, zctx_free);
}

static struct zctx *
zctx_get (void)
{
  struct zctx *x;

  pthread_once (&zctx_once, zctx_key_init);
  x = pthread_getspecific (zctx_key);
  if (x == NULL && (x = calloc (1, sizeof *x)) != NULL &&
      pthread_setspecific (zctx_key, x) != 0) {
    free (x);
    x = NULL;
  }
  return x;
}

/* zlib as qemu: raw deflate, 4 KiB window, default level.  The
 * compressed length, 0 if it does not fit in out_len, -1 on error. */
static ssize_t
deflate_zlib (struct zctx *x, const uint8_t *in, size_t len, uint8_t *out,
              size_t out_len)
{
  int r;

  if (!x->z_ready) {
    if (deflateInit2 (&x->z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9,
                      Z_DEFAULT_STRATEGY) != Z_OK)
      return -1;
    x->z_ready = true;
  }
  else if (deflateReset (&x->z) != Z_OK)
    return -1;
  x->z.next_in = (Bytef *) in;
  x->z.avail_in = (uInt) len;
  x->z.next_out = out;
  x->z.avail_out = (uInt) out_len;
  r = deflate (&x->z, Z_FINISH);
  if (r == Z_STREAM_END)
    return (ssize_t) (out_len - x->z.avail_out);
  return r == Z_OK || r == Z_BUF_ERROR ? 0 : -1;
}

#ifdef HAVE_ZSTD
static ssize_t
deflate_zstd (struct zctx *x, const uint8_t *in, size_t len, uint8_t *out,
              size_t out_len)
{
  size_t r;

  if (x->zstd == NULL && (x->zstd = ZSTD_createCCtx ()) == NULL)
    return -1;
  r = ZSTD_compressCCtx (x->zstd, out, out_len, in, len,
                         ZSTD_CLEVEL_DEFAULT);
  if (!ZSTD_isError (r))
    return (ssize_t) r;
  return ZSTD_getErrorCode (r) == ZSTD_error_dstSize_tooSmall ? 0 : -1;
}
#endif

/* Compresses one cluster into out (cluster_size - 1 bytes): the length,
 * 0 if it does not fit, -1 with an error set. */
static ssize_t
compress_cluster (struct qcow2 *q, const uint8_t *in, uint8_t *out)
{
  struct zctx *x = zctx_get ();
  ssize_t r;

  if (x == NULL)
    return error_file (q->img, ENOMEM, "out of memory");
#ifdef HAVE_ZSTD
  if (q->h.compression_type == QCOW2_COMPRESSION_ZSTD)
    r = deflate_zstd (x, in, q->cluster_size, out, q->cluster_size - 1);
  else
#endif
    r = deflate_zlib (x, in, q->cluster_size, out, q->cluster_size - 1);
  if (r == -1)
    return error_file (q->img, EIO, "compressing a cluster failed");
  return r;
}

/* ---- writing ------------------------------------------------------------ */

static int
check_compressed_request (struct qcow2 *q, size_t count, uint64_t offset)
{
  if (!IS_ALIGNED (offset, q->cluster_size) || count > q->cluster_size ||
      (count < q->cluster_size && offset + count != q->img->size))
    return error_file (q->img, EINVAL, "compressed write of %zu bytes at "
                       "offset %" PRIu64 ": must be one whole cluster (%"
                       PRIu64 " bytes), or the image's last", count, offset,
                       q->cluster_size);
  return 0;
}

int
qcow2_write_compressed (struct image *img, const void *buf, size_t count,
                        uint64_t offset)
{
  struct qcow2 *q = img->priv;
  CLEANUP_FREE uint8_t *padded = NULL;
  CLEANUP_FREE uint8_t *out = NULL;
  const uint8_t *in = buf;
  ssize_t len;

  if (check_compressed_request (q, count, offset) == -1)
    return -1;
  if (count < q->cluster_size) {
    padded = calloc (1, q->cluster_size);
    if (padded == NULL)
      return error_file (img, ENOMEM, "out of memory");
    memcpy (padded, buf, count);
    in = padded;
  }
  out = malloc (q->cluster_size);
  if (out == NULL)
    return error_file (img, ENOMEM, "out of memory");
  len = compress_cluster (q, in, out);
  if (len == -1)
    return -1;
  if (len == 0)                 /* incompressible: as qemu, stored plain */
    return cow_pwrite (img, buf, count, offset, 0);
  return cow_write_compressed (&q->cow, out, (uint64_t) len, offset);
}

/* Whether compressed data may go on at q->zfree (see the top): *count
 * receives that cluster's refcount.  Called with q->cow.lock held. */
static bool
zfree_usable (struct qcow2 *q, uint64_t len, uint64_t *count)
{
  uint64_t end = ROUND_UP (q->zfree, q->cluster_size);

  if (IS_ALIGNED (q->zfree, q->cluster_size) || end > q->cow.file_end ||
      (q->zfree + len > end && end != q->cow.file_end))
    return false;
  if (qcow2_get_refcount (q, q->zfree >> q->cluster_bits, count) == -1)
    return false;
  return *count > 0 && *count < q->refcount_max;
}

/* Continues at q->zfree: one more reference on its cluster, and a new
 * cluster after it if the data runs over. */
static int
zreserve_after (struct qcow2 *q, uint64_t len, uint64_t count,
                uint64_t *host)
{
  uint64_t c = q->zfree >> q->cluster_bits;

  if (qcow2_set_refcount (q, c, count + 1) == -1)
    return -1;
  if (q->zfree + len > ROUND_UP (q->zfree, q->cluster_size) &&
      qcow2_alloc_clusters (q, 1) == -1) {
    qcow2_set_refcount (q, c, count);
    return -1;
  }
  *host = q->zfree;
  return 0;
}

int
qcow2_zreserve (void *fmt, uint64_t len, uint64_t *host)
{
  struct qcow2 *q = fmt;
  uint64_t count;
  int64_t h;

  if (zfree_usable (q, len, &count)) {
    if (zreserve_after (q, len, count, host) == -1)
      return -1;
  }
  else {
    if ((h = qcow2_alloc_clusters (q, 1)) == -1)
      return -1;
    *host = (uint64_t) h;
  }
  q->zfree = *host + len;
  q->compressed_end = MAX (q->compressed_end, ROUND_UP (q->zfree, 512));
  return 0;
}

void
qcow2_zfree_cut (struct qcow2 *q)
{
  if (q->zfree >= q->cow.file_end)
    q->zfree = 0;
}

/* The descriptor of len bytes at host: bit 62, the further sectors the
 * data touches, the byte offset. */
static uint64_t
descriptor (const struct qcow2 *q, uint64_t host, uint64_t len)
{
  uint64_t sectors = ((host + len - 1) >> 9) - (host >> 9);

  return QCOW2_COMPRESSED | (sectors << q->csize_shift) | host;
}

int
qcow2_zlink (void *fmt, const struct cow_run *r, uint64_t host,
             uint64_t len)
{
  struct qcow2 *q = fmt;
  uint64_t old = qcow2_l2_get (q, r->l2, r->l2_index);
  uint64_t e = descriptor (q, host, len);

  if (qcow2_drop_entry (q, old, false) == -1)
    return -1;
  qcow2_l2_set (q, r->l2, r->l2_index, e);
  /* Offsets come back after the free tail of the file is cut: a cached
   * cluster must not pass for this new one. */
  pthread_mutex_lock (&q->zc.lock);
  if (q->zc.entry == e)
    q->zc.entry = 0;
  pthread_mutex_unlock (&q->zc.lock);
  return 0;
}

/* A failed compressed write: the references zreserve counted go, and
 * the next compressed cluster starts afresh. */
void
qcow2_zgive_back (void *fmt, uint64_t host, uint64_t len)
{
  struct qcow2 *q = fmt;
  uint64_t c, v;

  for (c = host >> q->cluster_bits; c <= (host + len - 1) >> q->cluster_bits;
       c++)
    if (qcow2_get_refcount (q, c, &v) == -1 || v == 0 ||
        qcow2_set_refcount (q, c, v - 1) == -1)
      q->cow.leaked = true;
  q->zfree = 0;
}
