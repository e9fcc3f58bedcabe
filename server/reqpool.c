/* SPDX-License-Identifier: BSD-3-Clause */
/* Requests and their payload buffers, reused per connection.
 *
 * A request buffer is never allocated per request: touching fresh memory
 * costs a page fault per 4 KiB on this kind of machine, which is much of
 * what makes a server that mallocs a 1 MiB buffer per read slow.  Each
 * connection keeps the requests it has used on a free list, buffers
 * attached, and hands out the one with the smallest buffer that is large
 * enough; when none is, the smallest buffer is freed and a larger one
 * takes its place.  So a buffer only grows, and a connection allocates
 * at most one buffer per size class for each request it holds at once.
 *
 * Bounds, per connection: at most MAX_REQS_IN_FLIGHT requests out, and
 * at most MAX_CONN_BUFFERS bytes of buffers held, free or in use.  When a
 * request would pass either, req_get returns NULL and the caller stops
 * reading the socket; idle buffers are freed first to make room.
 * Buffer capacities are powers of two (at least 4 KiB) so that they fit
 * many request sizes.  Loop thread only.
 *
 * Bound for the process (--max-inflight): the bytes every connection
 * holds past its first CONN_FREE_BYTES are charged to one budget.
 *
 *   charged = sum over connections of max (0, buf_bytes - CONN_FREE_BYTES)
 *
 * A request that would take charged past cfg.max_inflight first frees
 * the idle buffers of every connection; if that is not enough, req_get
 * returns NULL as for the per-connection bound, the connection stops
 * reading (its payload stays in the socket: the client blocks) and is
 * marked waiting.  Every request given back (req_put) and every pool
 * freed wakes the waiting connections, which try again.  The free
 * allowance keeps small requests (a read of a few KiB) served while
 * large writes wait, at a cost bounded by the number of connections.
 */
#include <config.h>

#include <stdlib.h>

#include "internal.h"
#include "rounding.h"

/* Bytes of buffers a connection holds outside the global budget. */
#define CONN_FREE_BYTES (1u << 20)

static uint64_t charged;        /* see above */
static unsigned nwaiting;       /* connections with wait_global set */
/* For metrics and tests: bytes of buffers all connections hold, its
 * largest value so far, and how many buffers were allocated. */
static uint64_t held_all, held_peak, nallocs;

static uint64_t
charge_of (size_t held)
{
  return held > CONN_FREE_BYTES ? held - CONN_FREE_BYTES : 0;
}

/* Every change of c->buf_bytes goes through here. */
static void
set_held (struct conn *c, size_t held)
{
  charged -= charge_of (c->buf_bytes);
  held_all -= c->buf_bytes;
  c->buf_bytes = held;
  charged += charge_of (held);
  held_all += held;
  if (held_all > held_peak)
    held_peak = held_all;
}

uint64_t
reqpool_charged (void)
{
  return charged;
}

uint64_t
reqpool_held (void)
{
  return held_all;
}

uint64_t
reqpool_held_peak (void)
{
  return held_peak;
}

uint64_t
reqpool_allocations (void)
{
  return nallocs;
}

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

/* Unlinks and returns *pp's request. */
static struct req *
unlink_at (struct req **pp)
{
  struct req *r = *pp;

  *pp = r->next;
  return r;
}

/* Unlinks and returns the free request with the smallest buffer of at
 * least size bytes (best fit: a small request left a large buffer free
 * for the large request that comes next, which would otherwise have to
 * allocate one, until every buffer of the connection was large). */
static struct req *
take_fitting (struct conn *c, size_t size)
{
  struct req **pp, **best = NULL;
  size_t want = buffer_size_for (size);

  for (pp = &c->free_reqs; *pp; pp = &(*pp)->next) {
    if ((*pp)->cap < size || (best && (*best)->cap <= (*pp)->cap))
      continue;
    best = pp;
    if ((*pp)->cap == want)
      break;                    /* nothing fits better */
  }
  return best ? unlink_at (best) : NULL;
}

/* Unlinks and returns the free request with the smallest buffer (none
 * at best): every free buffer is too small for the request at hand, and
 * the smallest is the one least likely to fit the next. */
static struct req *
take_smallest (struct conn *c)
{
  struct req **pp, **best = NULL;

  for (pp = &c->free_reqs; *pp; pp = &(*pp)->next)
    if (!best || (*pp)->cap < (*best)->cap) {
      best = pp;
      if ((*pp)->cap == 0)
        break;
    }
  return best ? unlink_at (best) : NULL;
}

static void
drop_buffer (struct conn *c, struct req *r)
{
  free (r->buf);
  set_held (c, c->buf_bytes - r->cap);
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

/* Frees the idle buffers of c. */
static void
drop_idle (struct conn *c)
{
  struct req *r;

  for (r = c->free_reqs; r; r = r->next)
    if (r->cap)
      drop_buffer (c, r);
}

static bool
fits_global (struct conn *c, size_t cap)
{
  return charged - charge_of (c->buf_bytes) +
    charge_of (c->buf_bytes + cap) <= cfg.max_inflight;
}

/* Makes room for cap more bytes of c in the global budget, freeing idle
 * buffers everywhere if needed; false (c marked waiting) if there is
 * none. */
static bool
make_global_room (struct conn *c, size_t cap)
{
  struct conn *o;

  if (fits_global (c, cap))
    return true;
  for (o = conns_first (); o && !fits_global (c, cap); o = o->next)
    drop_idle (o);
  if (fits_global (c, cap))
    return true;
  if (!c->wait_global) {
    c->wait_global = true;
    nwaiting++;
  }
  return false;
}

/* Lets the waiting connections try again. */
static void
wake_waiting (void)
{
  struct conn *c;

  for (c = conns_first (); c && nwaiting; c = c->next)
    if (c->wait_global) {
      c->wait_global = false;
      nwaiting--;
      conn_resume_input (c);
    }
}

/* A request whose buffer is too small (or a new one) given a buffer of
 * cap bytes. */
static struct req *
grow_one (struct conn *c, size_t cap)
{
  struct req *r;

  if (!make_room (c, cap) || !make_global_room (c, cap))
    return NULL;
  r = take_smallest (c);
  if (r == NULL) {
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
    set_held (c, c->buf_bytes + cap);
    nallocs++;
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
  r->sent = SENT_NO;
  r->zc = false;
  r->handed = r->written_out = false;
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
  if (nwaiting)
    wake_waiting ();
}

void
reqpool_free (struct conn *c)
{
  struct req *r;

  if (c->wait_global) {
    c->wait_global = false;
    nwaiting--;
  }
  while ((r = c->free_reqs) != NULL) {
    c->free_reqs = r->next;
    if (r->cap)
      drop_buffer (c, r);
    free (r);
  }
  if (nwaiting)
    wake_waiting ();
}
