/* SPDX-License-Identifier: BSD-3-Clause */
/* qcow2 compressed clusters, read side.
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
 * cluster.  The engine never writes compressed clusters: a write into one
 * allocates a new cluster (qcow2-cluster.c).
 *
 * The last cluster decompressed is kept (zc), so that small sequential
 * reads through a compressed cluster inflate it once.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#ifdef HAVE_ZSTD
#include <zstd.h>
#endif

#include "cleanup.h"
#include "qcow2.h"

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
