/* SPDX-License-Identifier: BSD-3-Clause */
/* Requests and their payload buffers, reused per connection.
 *
 * A request buffer is never allocated per request: touching fresh memory
 * costs a page fault per 4 KiB on this kind of machine, which is much of
 * what makes a server that mallocs a 1 MiB buffer per read slow.  Each
 * connection keeps the requests it has used on a free list, buffers
 * attached, and hands out the first whose buffer is large enough.
 *
 * Bounds, per connection: at most MAX_REQS_IN_FLIGHT requests out, and
 * at most MAX_CONN_BUFFERS bytes of buffers held, free or in use.  When a
 * request would pass either, req_get returns NULL and the caller stops
 * reading the socket; idle buffers are freed first to make room.
 * Buffer capacities are powers of two (at least 4 KiB) so that they fit
 * many request sizes.  Loop thread only.
 */
#include <config.h>

#include <stdlib.h>

#include "internal.h"
#include "rounding.h"

static size_t
buffer_size_for (size_t size)
{
  size_t cap = 4096;

  if (size == 0)
    return 0;
  while (cap < size)
    cap <<= 1;
  return cap;
}

/* Unlinks and returns the first free request with cap >= size. */
static struct req *
take_fitting (struct conn *c, size_t size)
{
  struct req **pp, *r;

  for (pp = &c->free_reqs; (r = *pp) != NULL; pp = &r->next)
    if (r->cap >= size) {
      *pp = r->next;
      return r;
    }
  return NULL;
}

static void
drop_buffer (struct conn *c, struct req *r)
{
  free (r->buf);
  c->buf_bytes -= r->cap;
  r->buf = NULL;
  r->cap = 0;
}

/* Frees idle buffers until need more bytes fit the budget. */
static bool
make_room (struct conn *c, size_t need)
{
  struct req *r;

  for (r = c->free_reqs; r && c->buf_bytes + need > MAX_CONN_BUFFERS;
       r = r->next)
    if (r->cap)
      drop_buffer (c, r);
  return c->buf_bytes + need <= MAX_CONN_BUFFERS;
}

/* A request whose buffer is too small (or a new one) given a buffer of
 * cap bytes. */
static struct req *
grow_one (struct conn *c, size_t cap)
{
  struct req *r;

  if (!make_room (c, cap))
    return NULL;
  r = c->free_reqs;
  if (r)
    c->free_reqs = r->next;
  else {
    r = calloc (1, sizeof *r);
    if (r == NULL)
      return NULL;
    c->nreqs++;
  }
  if (r->cap)
    drop_buffer (c, r);
  if (cap) {
    r->buf = malloc (cap);
    if (r->buf == NULL) {
      r->next = c->free_reqs;
      c->free_reqs = r;
      return NULL;
    }
    r->cap = cap;
    c->buf_bytes += cap;
  }
  return r;
}

struct req *
req_get (struct conn *c, size_t size)
{
  struct req *r;

  if (c->in_flight >= MAX_REQS_IN_FLIGHT)
    return NULL;
  r = take_fitting (c, size);
  if (r == NULL)
    r = grow_one (c, buffer_size_for (size));
  if (r == NULL)
    return NULL;
  c->in_flight++;
  r->next = NULL;
  r->conn = c;
  r->exp = c->exp;
  r->error = 0;
  r->inflight_bytes = 0;
  r->niov = r->iov_pos = 0;
  r->hdr_used = 0;
  r->last_chunk = NULL;
  return r;
}

void
req_put (struct req *r)
{
  struct conn *c = r->conn;

  metrics_request_put (r);
  r->next = c->free_reqs;
  c->free_reqs = r;
  c->in_flight--;
  conn_req_returned (c);
}

void
reqpool_free (struct conn *c)
{
  struct req *r;

  while ((r = c->free_reqs) != NULL) {
    c->free_reqs = r->next;
    free (r->buf);
    free (r);
  }
}
