/* SPDX-License-Identifier: BSD-3-Clause */
/* Reply builders: they fill a request's header area (r->hdr) and iovec
 * list (r->iov) without copying payload, which stays in r->buf.  Used by
 * the workers after an engine call and by the loop for refused requests.
 *
 *   simple:      [nbd_simple_reply] [data, READ only]
 *   structured:  [chunk hdr + offset] [data] [hole chunk] ... DONE on
 *                the last; errors are one ERROR chunk with DONE
 */
#include <config.h>

#include <assert.h>
#include <endian.h>
#include <string.h>

#include "internal.h"
#include "nbd-protocol.h"

static void *
hdr_alloc (struct req *r, size_t len)
{
  void *p;

  assert (r->hdr_used + len <= sizeof r->hdr);
  p = r->hdr + r->hdr_used;
  r->hdr_used += len;
  return p;
}

static void
iov_add (struct req *r, void *base, size_t len)
{
  assert (r->niov < REQ_MAX_IOV);
  r->iov[r->niov++] = (struct iovec) { base, len };
}

void
reply_reset (struct req *r)
{
  r->niov = 0;
  r->hdr_used = 0;
  r->last_chunk = NULL;
  r->iov_pos = 0;
}

void
reply_simple (struct req *r)
{
  struct nbd_simple_reply *h;

  reply_reset (r);
  h = hdr_alloc (r, sizeof *h);
  h->magic = htobe32 (NBD_SIMPLE_REPLY_MAGIC);
  h->error = htobe32 ((uint32_t) r->error);
  h->handle = r->handle;
  iov_add (r, h, sizeof *h);
}

void
reply_read_simple (struct req *r)
{
  reply_simple (r);
  if (r->error == 0)
    iov_add (r, r->buf, r->count);
}

/* Appends a chunk header with room for extra bytes after it. */
static struct nbd_chunk *
chunk (struct req *r, uint16_t type, uint32_t length, size_t size)
{
  struct nbd_chunk *h = hdr_alloc (r, size);

  h->magic = htobe32 (NBD_STRUCTURED_REPLY_MAGIC);
  h->flags = 0;
  h->type = htobe16 (type);
  h->handle = r->handle;
  h->length = htobe32 (length);
  r->last_chunk = h;
  iov_add (r, h, size);
  return h;
}

void
reply_set_done (struct req *r)
{
  struct nbd_chunk *h = r->last_chunk;

  assert (h);
  h->flags = htobe16 (NBD_REPLY_FLAG_DONE);
}

void
reply_error_chunk (struct req *r)
{
  struct nbd_chunk_error *e;

  reply_reset (r);
  e = (struct nbd_chunk_error *)
    chunk (r, NBD_REPLY_TYPE_ERROR, 6, sizeof *e);
  e->error = htobe32 ((uint32_t) r->error);
  e->msglen = 0;
  reply_set_done (r);
}

void
reply_none_chunk (struct req *r)
{
  chunk (r, NBD_REPLY_TYPE_NONE, 0, sizeof (struct nbd_chunk));
  reply_set_done (r);
}

void
reply_chunk_data (struct req *r, uint64_t offset, char *data, uint32_t len)
{
  struct nbd_chunk_offset_data *d;

  d = (struct nbd_chunk_offset_data *)
    chunk (r, NBD_REPLY_TYPE_OFFSET_DATA, 8 + len, sizeof *d);
  d->offset = htobe64 (offset);
  iov_add (r, data, len);
}

void
reply_chunk_hole (struct req *r, uint64_t offset, uint32_t len)
{
  struct nbd_chunk_offset_hole *h;

  h = (struct nbd_chunk_offset_hole *)
    chunk (r, NBD_REPLY_TYPE_OFFSET_HOLE, 12, sizeof *h);
  h->offset = htobe64 (offset);
  h->length = htobe32 (len);
}

void
reply_chunk_block_status (struct req *r, uint32_t id, const void *descs,
                          uint32_t len)
{
  struct nbd_chunk_block_status *b;

  b = (struct nbd_chunk_block_status *)
    chunk (r, NBD_REPLY_TYPE_BLOCK_STATUS, 4 + len, sizeof *b);
  b->context_id = htobe32 (id);
  iov_add (r, (void *) descs, len);
}
