/* SPDX-License-Identifier: BSD-3-Clause */
/* The engine calls behind each command, run on a worker thread (or, for
 * a small read or write or a flush that the engine can do without
 * waiting, on the loop: command_try_inline).  The
 * request was validated on the loop (transmission.c), so every call here
 * lies within the export; the engine still checks, and any error it
 * returns goes through nbd_errno().
 *
 * Reads with structured replies send the 4 KiB blocks that read as zeros
 * (holes, zero clusters, zeroed data) as OFFSET_HOLE chunks, found by
 * scanning the buffer rather than by asking the engine: image_extents
 * costs lseek(SEEK_HOLE) calls on the host file, which on tmpfs scan
 * every page up to the next hole and serialise on the file's position
 * lock (measured: 1 MiB reads at a quarter of nbdkit's speed).  Small
 * reads, and any read with DF, have one content chunk: a hole if the
 * whole range reads as zeros (a 4 KiB read of a thin image's empty part
 * then sends 32 bytes, not 4 KiB, as qemu-nbd does), else all of it as
 * data.  Past REQ_MAX_CHUNKS runs the rest of the range goes out as data.
 */
#include <config.h>

#include <assert.h>
#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "iszero.h"
#include "minmax.h"
#include "nbd-errno.h"
#include "nbd-protocol.h"

/* Reads shorter than this go out as one chunk (data or a hole). */
#define SPARSE_READ_MIN  (64u << 10)

static void
fail (struct req *r, const char *what)
{
  r->error = (int) nbd_errno (image_errno (), r->type, r->flags);
  log_conn (r->conn, LOG_INFO, "%s: %s", what, image_error ());
}

/* ---- READ -------------------------------------------------------------- */

/* Runs of zero and non-zero blocks in a read buffer: holes are sent as
 * OFFSET_HOLE chunks.  Reads are split at ZERO_BLOCK boundaries. */
#define ZERO_BLOCK 4096u

static void
read_whole (struct req *r)
{
  reply_chunk_data (r, r->offset, r->buf, r->count);
  reply_set_done (r);
}

/* One content chunk: a hole if the whole range reads as zeros (scanning
 * stops at the first byte that is not, at once for most data). */
static void
read_one_chunk (struct req *r)
{
  if (is_zero (r->buf, r->count)) {
    reply_chunk_hole (r, r->offset, r->count);
    reply_set_done (r);
  }
  else
    read_whole (r);
}

/* The length of the run starting at off that is all zero (or all not
 * zero, as *hole says), in whole blocks except at the end. */
static uint32_t
run_length (const struct req *r, uint32_t off, bool *hole)
{
  uint32_t end = off, n;

  n = MIN (ZERO_BLOCK - (uint32_t) ((r->offset + off) % ZERO_BLOCK),
           r->count - off);
  *hole = is_zero (r->buf + off, n);
  do {
    end += n;
    n = MIN (ZERO_BLOCK, r->count - end);
  } while (n && is_zero (r->buf + end, n) == *hole);
  return end - off;
}

static void
read_sparse (struct req *r)
{
  uint32_t off = 0;
  unsigned chunks = 0;

  while (off < r->count) {
    bool hole;
    uint32_t len = run_length (r, off, &hole);

    if (++chunks == REQ_MAX_CHUNKS) {   /* the rest as data */
      hole = false;
      len = r->count - off;
    }
    if (hole)
      reply_chunk_hole (r, r->offset + off, len);
    else
      reply_chunk_data (r, r->offset + off, r->buf + off, len);
    off += len;
  }
  reply_set_done (r);
}

/* The reply of a read whose data is in r->buf. */
static void
read_reply (struct req *r)
{
  if (!r->structured)
    reply_read_simple (r);
  else if (r->count < SPARSE_READ_MIN || (r->flags & NBD_CMD_FLAG_DF))
    read_one_chunk (r);
  else
    read_sparse (r);
}

static void
cmd_read (struct req *r)
{
  if (image_pread (r->exp->img, r->buf, r->count, r->offset) == -1) {
    fail (r, "read");
    if (r->structured)
      reply_error_chunk (r);
    else
      reply_read_simple (r);
  }
  else
    read_reply (r);
}

/* ---- BLOCK_STATUS ------------------------------------------------------ */

struct descs {
  struct nbd_block_descriptor *d;
  unsigned n;
};

struct status_walk {
  struct req *r;
  struct descs base, depth;
  unsigned max;
};

static bool
desc_fits (const struct descs *l, unsigned max, uint32_t status)
{
  return (l->n && be32toh (l->d[l->n - 1].status) == status) || l->n < max;
}

/* Appends one extent to a descriptor list, merged into the last
 * descriptor when the status is the same (desc_fits said it fits). */
static void
desc_add (struct descs *l, uint64_t length, uint32_t status)
{
  if (l->n && be32toh (l->d[l->n - 1].status) == status) {
    uint32_t len = be32toh (l->d[l->n - 1].length);
    l->d[l->n - 1].length = htobe32 (len + (uint32_t) length);
    return;
  }
  l->d[l->n].length = htobe32 ((uint32_t) length);
  l->d[l->n].status = htobe32 (status);
  l->n++;
}

static uint32_t
base_status (const struct image_extent *e)
{
  return (!(e->flags & IMAGE_EXTENT_DATA) ? NBD_STATE_HOLE : 0) |
    ((e->flags & IMAGE_EXTENT_ZERO) ? NBD_STATE_ZERO : 0);
}

static uint32_t
depth_status (const struct image_extent *e)
{
  return (e->flags & IMAGE_EXTENT_PRESENT) ? e->depth + 1 : 0;
}

static int
add_status (void *opaque, const struct image_extent *e)
{
  struct status_walk *w = opaque;
  bool base = w->r->ctx_base, depth = w->r->ctx_depth;

  /* Both lists describe the same range: stop when either is full. */
  if ((base && !desc_fits (&w->base, w->max, base_status (e))) ||
      (depth && !desc_fits (&w->depth, w->max, depth_status (e))))
    return 1;
  if (base)
    desc_add (&w->base, e->length, base_status (e));
  if (depth)
    desc_add (&w->depth, e->length, depth_status (e));
  return 0;
}

static void
cmd_block_status (struct req *r)
{
  bool one = r->flags & NBD_CMD_FLAG_REQ_ONE;
  struct status_walk w = {
    .r = r,
    .base = { (struct nbd_block_descriptor *) r->buf, 0 },
    .depth = { (struct nbd_block_descriptor *) r->buf + BS_MAX_DESCRIPTORS,
               0 },
    .max = one ? 1 : BS_MAX_DESCRIPTORS,
  };

  if (image_extents (r->exp->img, r->count, r->offset,
                     one ? IMAGE_EXTENTS_ONE : 0, add_status, &w) < 0) {
    fail (r, "block status");
    reply_error_chunk (r);
    return;
  }
  if (r->ctx_base)
    reply_chunk_block_status (r, META_ID_BASE_ALLOCATION, w.base.d,
                              w.base.n * sizeof *w.base.d);
  if (r->ctx_depth)
    reply_chunk_block_status (r, META_ID_ALLOCATION_DEPTH, w.depth.d,
                              w.depth.n * sizeof *w.depth.d);
  reply_set_done (r);
}

/* ---- the rest ---------------------------------------------------------- */

static unsigned
fua (const struct req *r)
{
  return (r->flags & NBD_CMD_FLAG_FUA) ? IMAGE_FUA : 0;
}

static unsigned
zero_flags (const struct req *r)
{
  return fua (r) |
    ((r->flags & NBD_CMD_FLAG_NO_HOLE) ? 0 : IMAGE_MAY_TRIM) |
    ((r->flags & NBD_CMD_FLAG_FAST_ZERO) ? IMAGE_FAST_ZERO : 0);
}

bool
command_try_inline (struct req *r)
{
  struct image *img = r->exp->img;

  if (r->count > INLINE_MAX)
    return false;
  switch (r->type) {
  case NBD_CMD_READ:
    if (image_pread_nowait (img, r->buf, r->count, r->offset) == -1)
      return false;
    read_reply (r);
    return true;
  case NBD_CMD_WRITE:
    if (image_pwrite_nowait (img, r->buf, r->count, r->offset,
                             fua (r)) == -1)
      return false;
    reply_simple (r);
    return true;
  case NBD_CMD_FLUSH:
    if (image_flush_nowait (img) == -1)
      return false;
    reply_simple (r);
    return true;
  default:
    return false;
  }
}

void
command_run (struct req *r)
{
  struct image *img = r->exp->img;

  switch (r->type) {
  case NBD_CMD_READ:
    cmd_read (r);
    return;
  case NBD_CMD_BLOCK_STATUS:
    cmd_block_status (r);
    return;
  case NBD_CMD_WRITE:
    if (image_pwrite (img, r->buf, r->count, r->offset, fua (r)) == -1)
      fail (r, "write");
    break;
  case NBD_CMD_FLUSH:
    if (image_flush (img) == -1)
      fail (r, "flush");
    break;
  case NBD_CMD_TRIM:
    if (image_trim (img, r->count, r->offset, fua (r)) == -1)
      fail (r, "trim");
    break;
  case NBD_CMD_WRITE_ZEROES:
    if (image_zero (img, r->count, r->offset, zero_flags (r)) == -1)
      fail (r, "write zeroes");
    break;
  case NBD_CMD_CACHE:
    if (image_cache (img, r->count, r->offset) == -1)
      fail (r, "cache");
    break;
  default:
    abort ();
  }
  reply_simple (r);
}
