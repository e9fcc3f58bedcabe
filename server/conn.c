/* SPDX-License-Identifier: BSD-3-Clause */
/* Connections: their watchers, input framing and output queue.
 *
 * Every connection is a state machine driven by two libev watchers on
 * non-blocking descriptors.  The protocol code (handshake.c,
 * transmission.c) never reads the socket: it says what it needs next,
 *
 *   conn_expect (c, n, fn)          n bytes, contiguous, passed to fn
 *   conn_expect_sink (c, p, n, fn)  n bytes copied to p (a payload)
 *   conn_expect_discard (c, n, fn)  n bytes thrown away (refused payload)
 *
 * and process_input calls fn when the bytes are there.  Small messages
 * come through ibuf, so that one read picks up many requests; a large
 * payload is read straight into its destination.  A handler returning
 * INPUT_PAUSE (no request slot or buffer left: backpressure) stops the
 * read watcher until a request comes back (conn_req_returned).
 *
 * Output is the handshake byte buffer wbuf, then the replies queued in
 * completion order, written together with one writev where possible.
 * In transmission on a plain transport a worker writes the reply it
 * made itself, while its data is hot in that core's cache, whenever
 * nothing else waits to go out (conn_send_from_worker): it takes the
 * writer role under send_lock, writes without the lock (the loop writes
 * nothing meanwhile), waits up to SEND_WAIT_MS for a full socket, and
 * leaves what it could not write first in the queue for the loop.
 * Replies are whole units on the wire either way: nothing is written
 * between the chunks of one reply.
 *
 * STARTTLS: once its ACK is out, the TLS transport replaces the plain
 * one and its handshake is driven by the same two watchers (see
 * conn_starttls), with a deadline, so that a stalled client holds up
 * nobody.
 *
 * Limits (CVE-2024-7409 in qemu-nbd is what they guard against): a
 * client has --handshake-limit seconds from accept to the start of
 * transmission (TLS included), else it is dropped; past
 * --max-connections a new client is accepted and closed at once, which
 * empties the listen queue (so the loop does not spin) and tells the
 * client right away.  Connections still waiting for the workers count
 * until freed: they hold memory too.
 *
 * Lifetime: conn_close closes the descriptors at once, but the object
 * stays until the workers hand back every request of it (in_flight).
 * conn_drain (DISC, ABORT, shutdown) stops reading and closes once every
 * reply is out.  Loop thread only, but for conn_send_from_worker.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "minmax.h"

#define IBUF_SIZE        (64u << 10)
/* A payload at least this long is read straight into its buffer. */
#define DIRECT_SINK_MIN  (16u << 10)
/* Reads per wakeup of one connection, so that none starves the rest. */
#define READS_PER_EVENT  16
#define OUT_IOV          64
/* Refused clients are reported at most this often (a flood logs a line
 * a minute, not a line a client). */
#define REFUSED_LOG_INTERVAL 60.

static struct conn *conns;
static unsigned nconns;
static unsigned long next_id;

static void read_cb (struct ev_loop *loop, ev_io *w, int revents);
static void write_cb (struct ev_loop *loop, ev_io *w, int revents);

static int
set_nonblock (int fd)
{
  int fl = fcntl (fd, F_GETFL);

  if (fl == -1 || fcntl (fd, F_SETFL, fl | O_NONBLOCK) == -1)
    return -1;
  return 0;
}

/* ---- limits ------------------------------------------------------------- */

static bool
refuse_if_full (struct ev_loop *loop, int rfd, int wfd, const char *peer)
{
  static ev_tstamp last_report;
  static unsigned long unreported;

  if (cfg.max_connections == 0 || nconns < cfg.max_connections)
    return false;
  close (rfd);
  if (wfd != rfd)
    close (wfd);
  if (last_report && ev_now (loop) - last_report < REFUSED_LOG_INTERVAL) {
    unreported++;
    return true;
  }
  if (unreported)
    log_error ("connection from %s refused: %u connections open "
               "(--max-connections), %lu more refused in the last %.0f s",
               peer, nconns, unreported, ev_now (loop) - last_report);
  else
    log_error ("connection from %s refused: %u connections open "
               "(--max-connections)", peer, nconns);
  last_report = ev_now (loop);
  unreported = 0;
  return true;
}

static void
handshake_timeout_cb (struct ev_loop *loop, ev_timer *w, int revents)
{
  char why[64];

  struct conn *c = w->data;

  snprintf (why, sizeof why, "handshake not finished within %u s",
            cfg.handshake_limit);
  c->hs_outcome = HS_TIMEOUT;
  conn_close (c, why);
}

static void
start_handshake_timer (struct conn *c)
{
  ev_timer_init (&c->hs_timer, handshake_timeout_cb,
                 (ev_tstamp) cfg.handshake_limit, 0.);
  c->hs_timer.data = c;
  if (cfg.handshake_limit)
    ev_timer_start (c->loop, &c->hs_timer);
}

void
conn_handshake_done (struct conn *c)
{
  ev_timer_stop (c->loop, &c->hs_timer);
}

/* ---- new connections --------------------------------------------------- */

struct conn *
conn_new (struct ev_loop *loop, int rfd, int wfd, const char *peer)
{
  struct conn *c;

  if (refuse_if_full (loop, rfd, wfd, peer))
    return NULL;
  c = calloc (1, sizeof *c);
  if (c == NULL || (c->ibuf = malloc (IBUF_SIZE)) == NULL ||
      set_nonblock (rfd) == -1 || set_nonblock (wfd) == -1 ||
      (c->tr_data = transport_plain_new (rfd, wfd)) == NULL) {
    log_error ("new connection from %s: %m", peer);
    if (c)
      free (c->ibuf);
    free (c);
    close (rfd);
    if (wfd != rfd)
      close (wfd);
    return NULL;
  }
  pthread_mutex_init (&c->send_lock, NULL);
  c->id = ++next_id;
  c->hs_outcome = -1;
  snprintf (c->peer, sizeof c->peer, "%s", peer);
  c->loop = loop;
  c->rfd = rfd;
  c->wfd = wfd;
  c->tr = &transport_plain;
  ev_io_init (&c->rio, read_cb, rfd, EV_READ);
  ev_io_init (&c->wio, write_cb, wfd, EV_WRITE);
  c->rio.data = c->wio.data = c;
  ev_io_start (loop, &c->rio);

  c->next = conns;
  if (conns)
    conns->prev = c;
  conns = c;
  nconns++;
  metrics_conn_accepted ();
  notify_changed ();
  log_conn (c, LOG_INFO, "opened");
  start_handshake_timer (c);
  handshake_start (c);
  return c;
}

void
conn_set_transport (struct conn *c, const struct transport *tr,
                    void *tr_data)
{
  c->tr->free (c->tr_data);
  c->tr = tr;
  c->tr_data = tr_data;
}

/* ---- STARTTLS ------------------------------------------------------------ */

static void pause_input (struct conn *c);
static bool has_output (struct conn *c);
static void start_drain (struct conn *c);

void
conn_starttls (struct conn *c, const struct transport *tr, void *tr_data)
{
  c->tls_next = tr;
  c->tls_next_data = tr_data;
  pause_input (c);              /* nothing more in plaintext */
}

static void
tls_timeout_cb (struct ev_loop *loop, ev_timer *w, int revents)
{
  struct conn *c = w->data;

  metrics_tls_handshake (false);
  log_conn (c, LOG_NOTICE, "TLS handshake timed out");
  conn_close (c, "TLS handshake timed out");
}

/* Steps the transport's handshake; on success reads on in TLS. */
static void
drive_tls_handshake (struct conn *c)
{
  bool want_write = false;
  int r = c->tr->handshake (c->tr_data, &want_write);

  if (r == -1) {
    metrics_tls_handshake (false);
    conn_close (c, "TLS handshake failed");
    return;
  }
  if (r == 1) {                 /* wait for the socket */
    if (want_write) {
      ev_io_stop (c->loop, &c->rio);
      ev_io_start (c->loop, &c->wio);
    }
    else {
      ev_io_stop (c->loop, &c->wio);
      ev_io_start (c->loop, &c->rio);
    }
    return;
  }
  metrics_tls_handshake (true);
  c->tls_handshaking = false;
  c->tls = true;
  ev_timer_stop (c->loop, &c->tls_timer);
  ev_io_stop (c->loop, &c->wio);
  handshake_tls_done (c);
  c->read_paused = false;
  ev_io_start (c->loop, &c->rio);
  /* The client's first option may already sit decrypted in GnuTLS. */
  ev_feed_event (c->loop, &c->rio, EV_READ);
}

/* The ACK of STARTTLS is out: the TLS transport takes over. */
static void
start_tls (struct conn *c)
{
  /* Bytes the client sent after STARTTLS, before the handshake, would be
   * read as if they came through TLS: refuse them (plaintext injection). */
  if (c->istart != c->iend) {
    conn_close (c, "data after STARTTLS, before the TLS handshake");
    return;
  }
  conn_set_transport (c, c->tls_next, c->tls_next_data);
  c->tls_next = NULL;
  c->tls_handshaking = true;
  ev_timer_init (&c->tls_timer, tls_timeout_cb, TLS_HANDSHAKE_TIMEOUT, 0.);
  c->tls_timer.data = c;
  ev_timer_start (c->loop, &c->tls_timer);
  drive_tls_handshake (c);
}

/* ---- input ------------------------------------------------------------- */

void
conn_expect (struct conn *c, size_t n, input_fn fn)
{
  c->imode = IN_BYTES;
  c->ineed = n;
  c->on_input = fn;
}

void
conn_expect_sink (struct conn *c, void *dst, size_t n, input_fn fn)
{
  c->imode = IN_SINK;
  c->sink = dst;
  c->sink_left = n;
  c->on_input = fn;
}

void
conn_expect_discard (struct conn *c, uint64_t n, input_fn fn)
{
  c->imode = IN_DISCARD;
  c->discard_left = n;
  c->on_input = fn;
}

static void
pause_input (struct conn *c)
{
  c->read_paused = true;
  ev_io_stop (c->loop, &c->rio);
}

void
conn_pause_input (struct conn *c)
{
  if (!c->dead)
    pause_input (c);
}

void
conn_resume_input (struct conn *c)
{
  if (!c->read_paused || c->dead || c->draining)
    return;
  c->read_paused = false;
  ev_io_start (c->loop, &c->rio);
  /* Bytes may already wait in ibuf: look at them on the next loop
   * iteration, not from inside whatever called us. */
  ev_feed_event (c->loop, &c->rio, EV_READ);
}

/* The end of the stream: at a message boundary after the handshake this
 * is a client going away; anywhere else the stream was cut short. */
static void
input_eof (struct conn *c)
{
  bool clean = c->exp && c->imode == IN_BYTES && c->istart == c->iend;

  if (!clean) {
    conn_close (c, c->exp ? "stream ended inside a request"
                : "stream ended during the handshake");
    return;
  }
  log_conn (c, LOG_INFO, "client closed");
  conn_drain (c);
}

/* Reads once: into the sink when a large payload is pending and ibuf is
 * empty, else into ibuf.  FILL_FULL: as many bytes as there was room
 * for; FILL_SHORT: fewer, so the socket had no more at that instant;
 * 0: nothing now; -1: closed. */
enum { FILL_FULL = 1, FILL_SHORT = 2 };

static int
fill (struct conn *c)
{
  ssize_t r;
  size_t room;

  if (c->istart == c->iend)
    c->istart = c->iend = 0;
  if (c->imode == IN_SINK && c->istart == c->iend &&
      c->sink_left >= DIRECT_SINK_MIN) {
    room = c->sink_left;
    r = c->tr->recv (c->tr_data, c->sink, room);
    if (r > 0) {
      c->sink += r;
      c->sink_left -= (size_t) r;
    }
  }
  else {
    if (c->imode == IN_BYTES && c->ineed > IBUF_SIZE - c->istart) {
      memmove (c->ibuf, c->ibuf + c->istart, c->iend - c->istart);
      c->iend -= c->istart;
      c->istart = 0;
    }
    room = IBUF_SIZE - c->iend;
    r = c->tr->recv (c->tr_data, c->ibuf + c->iend, room);
    if (r > 0)
      c->iend += (size_t) r;
  }
  if (r > 0)
    return (size_t) r < room ? FILL_SHORT : FILL_FULL;
  if (r == 0) {
    input_eof (c);
    return -1;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK)
    return 0;
  conn_close (c, strerror (errno));
  return -1;
}

/* Calls the handler; bytes handed to it in IN_BYTES mode were consumed
 * unless it pauses.  false: stop processing. */
static bool
call_handler (struct conn *c, const char *data, size_t n)
{
  int r;

  c->istart += n;
  r = c->on_input (c, data);
  if (r == INPUT_OK)
    return !c->dead;
  if (r == INPUT_PAUSE) {
    c->istart -= n;
    pause_input (c);
    return false;
  }
  conn_close (c, "protocol error");
  return false;
}

/* Serves what ibuf holds for the current expectation; true if the
 * handler ran (or bytes were used), false if more input is needed. */
static bool
consume_buffered (struct conn *c, bool *stop)
{
  size_t avail = c->iend - c->istart, n;

  *stop = false;
  switch (c->imode) {
  case IN_BYTES:
    if (avail < c->ineed)
      return false;
    *stop = !call_handler (c, c->ibuf + c->istart, c->ineed);
    return true;

  case IN_SINK:
    n = MIN (avail, c->sink_left);
    memcpy (c->sink, c->ibuf + c->istart, n);
    c->sink += n;
    c->sink_left -= n;
    c->istart += n;
    if (c->sink_left > 0)
      return false;
    *stop = !call_handler (c, NULL, 0);
    return true;

  case IN_DISCARD:
    n = (size_t) MIN ((uint64_t) avail, c->discard_left);
    c->discard_left -= n;
    c->istart += n;
    if (c->discard_left > 0)
      return false;
    *stop = !call_handler (c, NULL, 0);
    return true;
  }
  abort ();
}

static void
process_input (struct conn *c)
{
  unsigned reads = 0;
  bool stop, drained = false;
  int r;

  c->in_input = true;
  while (!c->dead && !c->draining && !c->read_paused) {
    if (consume_buffered (c, &stop)) {
      if (stop)
        break;
      continue;
    }
    if (reads++ == READS_PER_EVENT) {
      /* Come back after the others had their turn (a TLS transport may
       * hold bytes the socket no longer signals). */
      if (c->tr->pending (c->tr_data))
        ev_feed_event (c->loop, &c->rio, EV_READ);
      break;
    }
    /* A short read emptied the socket: one more recv would most likely
     * find nothing (a wasted system call per event; W11s made 1.6 reads
     * a request).  The loop's poll says when more bytes arrive. */
    if (drained && !c->tr->pending (c->tr_data))
      break;
    r = fill (c);
    if (r <= 0)
      break;
    drained = r == FILL_SHORT;
  }
  c->in_input = false;
  /* Replies made while reading (inline requests, refusals) go out
   * together: one writev for a burst of pipelined requests. */
  if (!c->dead && has_output (c))
    conn_kick_output (c);
}

static void
read_cb (struct ev_loop *loop, ev_io *w, int revents)
{
  struct conn *c = w->data;
  unsigned long before = c->requests;

  if (c->tls_handshaking && !c->dead) {
    drive_tls_handshake (c);
    return;
  }
  /* A fed event may arrive after a pause or a close. */
  if (c->read_paused || c->dead || c->draining)
    return;
  process_input (c);
  if (c->exp)                   /* in transmission */
    spin_busy (loop, c->requests - before);
}

/* ---- output ------------------------------------------------------------ */

/* Output state is shared with the workers once transmission starts
 * (conn_send_from_worker): every function below that touches wbuf's
 * offsets or the output queue holds send_lock, even in the handshake,
 * where nobody else does (an uncontended lock costs nothing here). */
#define LOCK(c)   pthread_mutex_lock (&(c)->send_lock)
#define UNLOCK(c) pthread_mutex_unlock (&(c)->send_lock)

/* How long a worker waits for a full socket before it leaves the rest
 * of its reply to the loop (a client that does not read ties up no
 * worker for longer). */

static int
send_locked (struct conn *c, const void *data, size_t len, bool bounded)
{
  if (c->woff == c->wlen)
    c->woff = c->wlen = 0;
  if (bounded && c->wlen - c->woff + len > MAX_HANDSHAKE_OUT)
    return -1;
  if (c->wlen + len > c->wcap) {
    size_t cap = MAX (MAX (c->wcap * 2, c->wlen + len), (size_t) 4096);
    char *p = realloc (c->wbuf, cap);
    if (p == NULL)
      return -1;
    c->wbuf = p;
    c->wcap = cap;
  }
  memcpy (c->wbuf + c->wlen, data, len);
  c->wlen += len;
  return 0;
}

int
conn_send (struct conn *c, const void *data, size_t len)
{
  int r;

  LOCK (c);
  r = send_locked (c, data, len, true);
  UNLOCK (c);
  return r;
}

int
conn_send_unbounded (struct conn *c, const void *data, size_t len)
{
  int r;

  LOCK (c);
  r = send_locked (c, data, len, false);
  UNLOCK (c);
  return r;
}

void
conn_queue_reply (struct conn *c, struct req *r)
{
  r->next = NULL;
  r->iov_pos = 0;
  LOCK (c);
  if (c->outq_tail)
    c->outq_tail->next = r;
  else
    c->outq_head = r;
  c->outq_tail = r;
  UNLOCK (c);
  if (!c->in_input)             /* else process_input writes them all */
    conn_kick_output (c);
}

/* Gathers what waits to be written; returns the number of iovecs. */
static int
gather (struct conn *c, struct iovec *iov)
{
  struct req *r;
  int n = 0, i;

  if (c->woff < c->wlen)
    iov[n++] = (struct iovec) { c->wbuf + c->woff, c->wlen - c->woff };
  for (r = c->outq_head; r && n < OUT_IOV; r = r->next)
    for (i = r->iov_pos; i < r->niov && n < OUT_IOV; i++)
      iov[n++] = r->iov[i];
  return n;
}

size_t
req_consume (struct req *r, size_t len)
{
  while (r->iov_pos < r->niov && len > 0) {
    struct iovec *v = &r->iov[r->iov_pos];
    size_t n = MIN (len, v->iov_len);

    v->iov_base = (char *) v->iov_base + n;
    v->iov_len -= n;
    len -= n;
    if (v->iov_len == 0)
      r->iov_pos++;
  }
  return len;
}

/* Advances the output past len written bytes (send_lock held); the
 * requests written out go on *done, to be put back once unlocked. */
static void
advance (struct conn *c, size_t len, struct req **done)
{
  size_t n = MIN (len, c->wlen - c->woff);

  c->woff += n;
  len -= n;
  while (c->outq_head) {
    struct req *r = c->outq_head;

    len = req_consume (r, len);
    if (r->iov_pos < r->niov)
      break;
    c->outq_head = r->next;
    if (c->outq_head == NULL)
      c->outq_tail = NULL;
    if (r->handed)              /* its worker's news is on the way */
      r->written_out = true;
    else {
      r->next = *done;
      *done = r;
    }
  }
}

static void
put_all (struct req *r)
{
  struct req *next;

  for (; r; r = next) {
    next = r->next;
    req_put (r);
  }
}

static bool
output_empty (struct conn *c)
{
  return c->woff == c->wlen && c->outq_head == NULL;
}

static bool
has_output (struct conn *c)
{
  bool r;

  LOCK (c);
  r = !output_empty (c);
  UNLOCK (c);
  return r;
}

static void
maybe_finish (struct conn *c)
{
  if (!c->dead && c->draining && c->in_flight == 0 && !has_output (c)) {
    c->tr->shutdown (c->tr_data);
    conn_close (c, NULL);
  }
}

enum { OUT_EMPTY, OUT_FULL, OUT_WORKER, OUT_FAILED };

/* Writes what waits until all is out or the socket is full (send_lock
 * held); nothing while a worker writes. */
static int
write_queued (struct conn *c, struct req **done, bool *progress)
{
  struct iovec iov[OUT_IOV];

  if (c->writer)
    return OUT_WORKER;
  while (!output_empty (c)) {
    int n = gather (c, iov);
    ssize_t r = c->tr->writev (c->tr_data, iov, n);

    if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return OUT_FULL;
    if (r == -1)
      return OUT_FAILED;
    advance (c, (size_t) r, done);
    *progress = true;
  }
  return OUT_EMPTY;
}

void
conn_kick_output (struct conn *c)
{
  struct req *done = NULL;
  bool progress = false, drain;
  int st, err;

  if (c->dead)
    return;
  LOCK (c);
  st = write_queued (c, &done, &progress);
  err = errno;
  drain = st == OUT_EMPTY && c->pending.head && !c->drain_queued;
  if (drain)
    c->drain_queued = true;
  UNLOCK (c);
  put_all (done);
  if (drain)
    start_drain (c);
  switch (st) {
  case OUT_WORKER:              /* its return kicks again */
    ev_io_stop (c->loop, &c->wio);
    return;
  case OUT_FULL:
    ev_io_start (c->loop, &c->wio);
    return;
  case OUT_FAILED:
    conn_close (c, strerror (err));
    return;
  }
  ev_io_stop (c->loop, &c->wio);
  if (c->tls_next) {            /* the STARTTLS ACK is out */
    start_tls (c);
    return;
  }
  /* Handshake input waits for its replies to drain (MAX_HANDSHAKE_OUT). */
  if (progress && c->exp == NULL && !c->tls_handshaking)
    conn_resume_input (c);
  maybe_finish (c);
}

static void
write_cb (struct ev_loop *loop, ev_io *w, int revents)
{
  struct conn *c = w->data;

  if (c->tls_handshaking && !c->dead)
    drive_tls_handshake (c);
  else
    conn_kick_output (c);
}

/* ---- output from workers ------------------------------------------------ */

/* The replies workers made wait on c->pending for the worker that holds
 * the writer role, which writes them one after the other, each as soon
 * as it is out handed back to the loop (workers_done).  A worker takes
 * the role when nobody holds it and the loop's queue is empty (what is
 * in the loop's queue is ahead on the wire); if the loop's queue was
 * not empty, the loop starts a worker on the pending replies once it
 * has written its own (start_drain). */

int
conn_wait_writable (int fd)
{
  struct pollfd p = { .fd = fd, .events = POLLOUT };

  return poll (&p, 1, SEND_WAIT_MS) != 0;
}

/* Writes r's reply from memory: 0 when all is out, EAGAIN when the
 * socket stayed full, else the errno of the failure. */
static int
write_reply (struct conn *c, struct req *r)
{
  while (r->iov_pos < r->niov) {
    ssize_t n = c->tr->writev (c->tr_data, &r->iov[r->iov_pos],
                               r->niov - r->iov_pos);

    if (n >= 0) {
      req_consume (r, (size_t) n);
      continue;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return errno;
    if (!conn_wait_writable (c->wfd))
      return EAGAIN;
  }
  return 0;
}

static void
list_push (struct req_list *l, struct req *r)
{
  r->next = NULL;
  if (l->tail)
    l->tail->next = r;
  else
    l->head = r;
  l->tail = r;
}

static struct req *
list_pop (struct req_list *l)
{
  struct req *r = l->head;

  if (r) {
    l->head = r->next;
    if (l->head == NULL)
      l->tail = NULL;
  }
  return r;
}

static void
list_concat (struct req_list *a, struct req_list *b)
{
  if (b->head == NULL)
    return;
  if (a->tail)
    a->tail->next = b->head;
  else
    a->head = b->head;
  a->tail = b->tail;
  *b = (struct req_list) { NULL, NULL };
}

/* Hands every reply of l back to the loop (send_lock held: the loop
 * sees them after the writer role is given back). */
static void
hand_back (struct req_list *l, enum req_sent sent, int e)
{
  struct req *p, *next;

  for (p = l->head; p; p = next) {
    next = p == l->tail ? NULL : p->next;
    p->sent = sent;
    p->send_errno = e;
    p->handed = sent == SENT_PART;
    p->written_out = false;
    workers_done (p);
  }
}

/* The writer could not write r whole (e).  Socket full (EAGAIN): the
 * rest of r goes to the head of the loop's queue, and the pending
 * replies stay pending: once the loop has written r's rest it starts a
 * worker on them (start_drain), which sends them from the file then, or
 * gives up again.  Reading them all into memory here made every reply
 * in flight cost its buffer's worth of fresh memory whenever a client
 * was slow to read (nbdcopy with 4 connections: 150 replies of 256 KiB,
 * 37 MiB of RSS).  Else (the socket broke) r and every pending reply
 * fail.  The role is given back either way. */
static void
give_up (struct conn *c, struct req *r, int e)
{
  struct req_list l = { NULL, NULL };

  list_push (&l, r);
  LOCK (c);
  c->writer = false;
  if (e == EAGAIN && !c->wclosed) {
    r->next = c->outq_head;
    if (c->outq_head == NULL)
      c->outq_tail = r;
    c->outq_head = r;
    hand_back (&l, SENT_PART, 0);
  }
  else {
    list_concat (&l, &c->pending);
    hand_back (&l, SENT_ERROR, e == EAGAIN ? EPIPE : e);
  }
  UNLOCK (c);
}

/* Holding the writer role: writes r, then the pending replies. */
static void
writer_loop (struct conn *c, struct req *r)
{
  struct req *next;
  int e;

  for (;;) {
    e = r->zc ? zerocopy_send (c, r) : write_reply (c, r);
    if (e) {
      give_up (c, r, e);
      return;
    }
    LOCK (c);
    next = list_pop (&c->pending);
    if (next == NULL)
      c->writer = false;
    r->next = NULL;
    r->sent = SENT_ALL;
    workers_done (r);
    UNLOCK (c);
    if (next == NULL)
      return;
    r = next;
  }
}

void
conn_send_from_worker (struct req *r)
{
  struct conn *c = r->conn;
  bool take;

  if (!c->direct) {
    r->sent = SENT_NO;
    workers_done (r);
    return;
  }
  LOCK (c);
  if (c->wclosed) {
    r->sent = SENT_ERROR;
    r->send_errno = EPIPE;
    workers_done (r);
    UNLOCK (c);
    return;
  }
  take = !c->writer && output_empty (c);
  if (take)
    c->writer = true;
  else
    list_push (&c->pending, r);
  UNLOCK (c);
  if (take)
    writer_loop (c, r);
}

/* A worker writes the pending replies, now that the loop's are out. */
static void
drain_run (struct job *j)
{
  struct conn *c = (struct conn *) ((char *) j -
                                    offsetof (struct conn, drain_job));
  struct req *r = NULL;

  LOCK (c);
  if (!c->writer && !c->wclosed && output_empty (c)) {
    r = list_pop (&c->pending);
    c->writer = r != NULL;
  }
  UNLOCK (c);
  if (r)
    writer_loop (c, r);
}

/* Loop thread: the job held the connection like a request, and may be
 * the last thing a draining connection waited for: kick the output,
 * which also finishes the drain.  Only now may the job be queued again:
 * it sits on the workers' done list until this runs, and queueing it
 * there twice links it to itself (the loop then spun in async_cb). */
static void
drain_done (struct job *j)
{
  struct conn *c = (struct conn *) ((char *) j -
                                    offsetof (struct conn, drain_job));

  LOCK (c);
  c->drain_queued = false;
  UNLOCK (c);
  c->in_flight--;
  conn_req_returned (c);
  conn_kick_output (c);
}

static void
start_drain (struct conn *c)
{
  c->in_flight++;
  c->drain_job.run = drain_run;
  c->drain_job.done = drain_done;
  workers_submit_job (&c->drain_job);
}

void
conn_reply_returned (struct conn *c, struct req *r)
{
  bool out;

  switch (r->sent) {
  case SENT_NO:
    if (c->dead)
      req_put (r);
    else
      conn_queue_reply (c, r);
    return;
  case SENT_ERROR:
    conn_close (c, strerror (r->send_errno));
    req_put (r);
    return;
  case SENT_PART:
    LOCK (c);
    r->handed = false;
    out = r->written_out;
    UNLOCK (c);
    if (out)
      req_put (r);
    break;
  case SENT_ALL:
    req_put (r);
    break;
  }
  /* Replies queued while the worker wrote, the rest of r, or the end of
   * a drain. */
  conn_kick_output (c);
}

/* ---- lifetime ---------------------------------------------------------- */

/* Connections are freed from a prepare watcher, never from inside a
 * callback that may still hold the pointer.  A prepare watcher started
 * while the loop runs its prepare watchers (a reap that gave budget back
 * woke a connection, which then closed) runs only after the loop has
 * blocked, and nothing may wake it: an idle watcher, started with it,
 * keeps the loop from blocking until one of the two has reaped. */
static struct conn *zombies;
static ev_prepare reaper;
static ev_idle reap_nudge;

static void release_transport (struct conn *c);

void
conns_reap (void)
{
  struct conn *c;

  while ((c = zombies) != NULL) {
    zombies = c->next;
    if (c->close_later)
      release_transport (c);
    export_release (c->exp);    /* the export may now go idle */
    reqpool_free (c);
    pthread_mutex_destroy (&c->send_lock);
    free (c);
    notify_changed ();
    if (--nconns == 0)
      server_conns_gone ();
  }
}

static void
reap_watchers_stop (struct ev_loop *loop)
{
  ev_prepare_stop (loop, &reaper);
  ev_idle_stop (loop, &reap_nudge);
}

static void
reap_cb (struct ev_loop *loop, ev_prepare *w, int revents)
{
  reap_watchers_stop (loop);
  conns_reap ();
}

static void
reap_nudge_cb (struct ev_loop *loop, ev_idle *w, int revents)
{
  reap_watchers_stop (loop);
  conns_reap ();
}

static void
conn_free_later (struct conn *c)
{
  if (c->freeing)
    return;
  c->freeing = true;
  if (c->prev)
    c->prev->next = c->next;
  else
    conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->next = zombies;
  zombies = c;
  if (!ev_is_active (&reaper)) {
    ev_prepare_init (&reaper, reap_cb);
    ev_prepare_start (c->loop, &reaper);
    ev_idle_init (&reap_nudge, reap_nudge_cb);
    ev_idle_start (c->loop, &reap_nudge);
  }
}

void
conn_req_returned (struct conn *c)
{
  if (c->dead) {
    if (c->in_flight == 0)
      conn_free_later (c);
    return;
  }
  if (c->read_paused)
    conn_resume_input (c);
}

/* Frees the transport and closes the descriptors. */
static void
release_transport (struct conn *c)
{
  if (c->tls_next)              /* switched to, or not yet */
    c->tls_next->free (c->tls_next_data);
  if (c->tr != c->tls_next)
    c->tr->free (c->tr_data);
  c->tls_next = NULL;
  close (c->rfd);
  if (c->wfd != c->rfd)
    close (c->wfd);
}

/* Stops all output: a worker writing now fails at once, and its
 * descriptor (and transport) stay until the connection is freed, so
 * that it never writes to a descriptor reused by someone else.  Returns
 * the replies nobody will read. */
static struct req *
close_output (struct conn *c)
{
  struct req *r, *next, *done = NULL;

  LOCK (c);
  c->wclosed = true;
  if (c->writer) {               /* it fails the pending replies */
    c->close_later = true;
    shutdown (c->wfd, SHUT_RDWR);
  }
  else {
    release_transport (c);
    hand_back (&c->pending, SENT_ERROR, EPIPE);
    c->pending = (struct req_list) { NULL, NULL };
  }
  for (r = c->outq_head; r; r = next) {
    next = r->next;
    if (r->handed)
      r->written_out = true;
    else {
      r->next = done;
      done = r;
    }
  }
  c->outq_head = c->outq_tail = NULL;
  UNLOCK (c);
  return done;
}

void
conn_close (struct conn *c, const char *why)
{
  struct req *r, *done;

  if (c->dead)
    return;
  c->dead = true;
  if (c->exp)
    metrics_export_conn (c->exp, -1);
  else
    metrics_handshake (c->hs_outcome >= 0 ? c->hs_outcome : HS_FAILED);
  if (why)
    log_conn (c, LOG_INFO, "closed: %s", why);
  else
    log_conn (c, LOG_INFO, "closed");
  ev_io_stop (c->loop, &c->rio);
  ev_io_stop (c->loop, &c->wio);
  ev_timer_stop (c->loop, &c->tls_timer);
  ev_timer_stop (c->loop, &c->hs_timer);
  done = close_output (c);
  free (c->ibuf);
  free (c->wbuf);
  free (c->optbuf);
  free (c->meta_name);
  c->ibuf = c->wbuf = c->optbuf = c->meta_name = NULL;
  /* Replies nobody will read, and a write whose payload never came. */
  put_all (done);
  if (c->cur_req) {
    r = c->cur_req;
    c->cur_req = NULL;
    req_put (r);
  }
  /* Requests still with the workers come back through req_put. */
  if (c->in_flight == 0)
    conn_free_later (c);
}

void
conn_drain (struct conn *c)
{
  if (c->dead)
    return;
  c->draining = true;
  ev_io_stop (c->loop, &c->rio);
  /* A write whose payload has not all come never will now that nothing
   * is read: its request would hold the drain until the grace ran out. */
  if (c->cur_req) {
    struct req *r = c->cur_req;

    c->cur_req = NULL;
    req_put (r);
  }
  maybe_finish (c);
}

void
conns_drain_all (void)
{
  struct conn *c, *next;

  for (c = conns; c; c = next) {
    next = c->next;
    if (c->dead)
      continue;
    if (c->exp == NULL)
      conn_close (c, "server shutting down");
    else
      conn_drain (c);
  }
}

void
conns_drain_removed (void)
{
  struct conn *c, *next;

  for (c = conns; c; c = next) {
    next = c->next;
    if (c->dead || c->draining || c->exp == NULL || c->exp->ref == NULL ||
        !registry_export_removed (c->exp->ref))
      continue;
    log_conn (c, LOG_INFO, "export '%s' was removed: dropping the client "
              "once its requests are answered", c->exp->name);
    conn_drain (c);
  }
}

void
conns_close_all (void)
{
  struct conn *c, *next;

  for (c = conns; c; c = next) {
    next = c->next;
    conn_close (c, "server shutting down");
  }
}

struct conn *
conns_first (void)
{
  return conns;
}

unsigned
conns_count (void)
{
  return nconns;
}
