/* SPDX-License-Identifier: BSD-3-Clause */
/* A remote NBD export as a read-only source (source.h), through libnbd.
 *
 * One `struct remote` per URI per process, shared (refcounted) by every
 * image that reads it: 100 overlays of one remote base open one pool of
 * connections, not 100.
 *
 *   remote (URI, size, block-size limits, can block status)
 *     conns[0 .. max_conns)   a connection is used by one request at a
 *                             time (conn_get / conn_put); max_conns is
 *                             1, or POOL_MAX when the remote advertises
 *                             multi-conn
 *
 * A request takes a connection, sends its commands with libnbd's
 * asynchronous calls (a large read as several commands in flight), and
 * polls that connection until they are all answered or the deadline
 * (timeout_ms) passes.  On any failure the connection is closed (which
 * also drops commands still in flight, so nothing writes into the
 * caller's buffer afterwards) and the request fails with EIO.  The next
 * request connects again; failed connects are retried no sooner than a
 * backoff (100 ms doubling to 5 s) allows, failing fast meanwhile, so a
 * lost remote costs each read at most one timeout and service resumes
 * on its own when the remote is back.
 *
 * With a base cache (--base-cache, basecache.h), reads go through it and
 * it calls remote_fetch for what it lacks: each range crosses the network
 * once per host.
 *
 * The remote's allocation (base:allocation) is learnt once and kept in
 * r->map, one entry per 64 KiB grain: UNKNOWN, DATA, or ZERO when the
 * whole grain reads as zeros.  One block-status request maps up to
 * MAP_SPAN; a fetch then reads only the grains that hold data (zeros are
 * filled in locally, so holes cost no bytes, and read-ahead past the end
 * of the data costs nothing), and data_status answers from the map, so a
 * copy-on-write fill costs no round trip per cluster.  The remote is a
 * read-only base: what it said about a range stays true.
 *
 * Lock: r->lock guards conns[].busy and .h of idle slots, and the
 * backoff; a busy slot's handle belongs to the request that took it.
 * remotes_lock guards the list of remotes and refs.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basecache.h"
#include "internal.h"
#include "libnbd-load.h"
#include "minmax.h"
#include "rounding.h"
#include "source.h"

#define POOL_MAX 4                      /* connections with multi-conn */
#define CHUNK (256U << 10)              /* a large read's commands */
#define MAX_IN_FLIGHT 16                /* per request */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define READAHEAD 128                   /* base cache chunks: 8 MiB */
#define GRAIN (64U << 10)               /* allocation map entry */
#define MAP_SPAN (64ULL << 20)          /* mapped by one block status */

enum { MAP_UNKNOWN, MAP_DATA, MAP_ZERO };

struct conn {
  struct nbd_handle *h;                 /* NULL: not connected */
  bool busy;
};

struct remote {
  struct source src;                    /* first: src.fd == -1 */
  char *uri;
  unsigned refs;                        /* remotes_lock */
  struct remote *next;                  /* remotes_lock */
  unsigned timeout_ms;
  uint64_t size;
  uint32_t min_block, max_block;        /* max_block: our command size */
  bool can_status;                      /* base:allocation */
  unsigned max_conns;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct conn conns[POOL_MAX];
  uint64_t retry_at_ms;                 /* no connect before this */
  unsigned backoff_ms;
  bool size_warned;                     /* said the size changed */
  struct basecache *bc;                 /* NULL: no base cache */
  uint8_t *map;                         /* per GRAIN (atomic bytes); NULL:
                                         * no block status */
  uint64_t fetched_bytes;               /* atomic: sent by the remote */
};

static pthread_mutex_t remotes_lock = PTHREAD_MUTEX_INITIALIZER;
static struct remote *remotes;

static uint64_t
now_ms (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

/* Milliseconds left until deadline, at least 0. */
static int
left_ms (uint64_t deadline)
{
  uint64_t now = now_ms ();

  return now >= deadline ? 0 : (int) MIN (deadline - now, (uint64_t) INT_MAX);
}

/* ---- connecting ---------------------------------------------------------- */

/* Polls h until it is no longer connecting or the deadline passes. */
static int
wait_connected (struct nbd_handle *h, uint64_t deadline)
{
  while (nbdlib.nbd_aio_is_connecting (h)) {
    int ms = left_ms (deadline);
    if (ms == 0) {
      errno = ETIMEDOUT;
      return -1;
    }
    if (nbdlib.nbd_poll (h, ms) == -1)
      return -1;
  }
  if (!nbdlib.nbd_aio_is_ready (h)) {
    errno = nbdlib.nbd_get_errno () ? nbdlib.nbd_get_errno () : ECONNREFUSED;
    return -1;
  }
  return 0;
}

/* A new connection to uri, or NULL with *why (static or libnbd's) set
 * and errno ETIMEDOUT (the deadline passed) or EIO. */
static struct nbd_handle *
connect_uri (const char *uri, unsigned timeout_ms, const char **why)
{
  struct nbd_handle *h = nbdlib.nbd_create ();

  if (h == NULL) {
    *why = nbdlib.nbd_get_error ();
    return NULL;
  }
  /* libnbd's tls-psk-file= and tls-certificates= name local files:
   * allowed (whoever made the overlay chose them; see the registry's
   * rules for overlays found in a served directory). */
  if (nbdlib.nbd_set_uri_allow_local_file (h, true) == -1 ||
      nbdlib.nbd_add_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1 ||
      nbdlib.nbd_aio_connect_uri (h, uri) == -1 ||
      wait_connected (h, now_ms () + timeout_ms) == -1) {
    int e = errno == ETIMEDOUT ? ETIMEDOUT : EIO;
    *why = e == ETIMEDOUT ? "timed out"
      : nbdlib.nbd_get_error () ? nbdlib.nbd_get_error () : strerror (errno);
    /* nbd_close may overwrite libnbd's message and errno: keep them */
    static _Thread_local char msg[512];
    snprintf (msg, sizeof msg, "%s", *why);
    *why = msg;
    nbdlib.nbd_close (h);
    errno = e;
    return NULL;
  }
  return h;
}

/* Learns the remote's size and limits from its first connection. */
static int
remote_learn (struct remote *r, struct nbd_handle *h)
{
  int64_t size = nbdlib.nbd_get_size (h);
  int64_t minb = nbdlib.nbd_get_block_size (h, LIBNBD_SIZE_MINIMUM);
  int64_t maxb = nbdlib.nbd_get_block_size (h, LIBNBD_SIZE_MAXIMUM);

  if (size < 0)
    return error_set (EIO, "%s: %s", r->uri, nbdlib.nbd_get_error ());
  r->size = (uint64_t) size;
  r->min_block = minb > 0 && minb <= 65536 ? (uint32_t) minb : 1;
  r->max_block = CHUNK;
  if (maxb > 0 && (uint64_t) maxb < CHUNK)
    r->max_block = (uint32_t) ROUND_DOWN ((uint64_t) maxb, r->min_block);
  if (r->max_block < r->min_block)
    r->max_block = r->min_block;
  r->can_status =
    nbdlib.nbd_can_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
  r->max_conns = nbdlib.nbd_can_multi_conn (h) == 1 ? POOL_MAX : 1;
  return 0;
}

/* Connects an idle slot (not under r->lock), honouring the backoff. */
static int
conn_connect (struct remote *r, struct conn *c)
{
  const char *why = NULL;
  uint64_t now = now_ms ();
  bool resized, warn;
  int e;

  pthread_mutex_lock (&r->lock);
  if (now < r->retry_at_ms) {
    pthread_mutex_unlock (&r->lock);
    errno = EIO;
    return -1;
  }
  pthread_mutex_unlock (&r->lock);
  c->h = connect_uri (r->uri, r->timeout_ms, &why);
  e = c->h == NULL && errno == ETIMEDOUT ? ETIMEDOUT : EIO;
  resized = c->h && nbdlib.nbd_get_size (c->h) != (int64_t) r->size;
  if (resized) {
    nbdlib.nbd_close (c->h);
    c->h = NULL;
  }
  pthread_mutex_lock (&r->lock);
  /* Connections made at once all see the change: one warning for it,
   * until a connection of the right size ends it. */
  warn = resized && !r->size_warned;
  r->size_warned = resized || (r->size_warned && c->h == NULL);
  if (c->h == NULL) {
    r->backoff_ms = MIN (MAX (r->backoff_ms * 2, (unsigned) BACKOFF_MIN_MS),
                         (unsigned) BACKOFF_MAX_MS);
    r->retry_at_ms = now_ms () + r->backoff_ms;
  }
  else
    r->backoff_ms = 0;
  pthread_mutex_unlock (&r->lock);
  if (warn)
    engine_warn ("%s: the remote's size changed: refusing it", r->uri);
  errno = e;
  return c->h ? 0 : -1;
}

/* Takes a connection for one request, waiting at most until deadline. */
static struct conn *
conn_get (struct remote *r, uint64_t deadline)
{
  struct conn *c = NULL;
  struct timespec ts = {
    .tv_sec = (time_t) (deadline / 1000),
    .tv_nsec = (long) (deadline % 1000) * 1000000,
  };
  unsigned i;
  int e = ETIMEDOUT;

  pthread_mutex_lock (&r->lock);
  while (c == NULL) {
    for (i = 0; i < r->max_conns && c == NULL; i++)
      if (!r->conns[i].busy && r->conns[i].h)
        c = &r->conns[i];
    for (i = 0; i < r->max_conns && c == NULL; i++)
      if (!r->conns[i].busy)
        c = &r->conns[i];
    if (c == NULL &&
        pthread_cond_timedwait (&r->cond, &r->lock, &ts) == ETIMEDOUT)
      break;
  }
  if (c)
    c->busy = true;
  pthread_mutex_unlock (&r->lock);
  if (c && c->h == NULL && conn_connect (r, c) == -1) {
    e = errno;
    pthread_mutex_lock (&r->lock);
    c->busy = false;
    pthread_cond_signal (&r->cond);
    pthread_mutex_unlock (&r->lock);
    c = NULL;
  }
  if (c == NULL)
    errno = e;
  return c;
}

/* Gives c back; broken: close it (and whatever it has in flight). */
static void
conn_put (struct remote *r, struct conn *c, bool broken)
{
  if (broken) {
    nbdlib.nbd_close (c->h);
    c->h = NULL;
  }
  pthread_mutex_lock (&r->lock);
  c->busy = false;
  pthread_cond_signal (&r->cond);
  pthread_mutex_unlock (&r->lock);
}

/* ---- requests ------------------------------------------------------------ */

/* Polls c until every cookie is answered; -1 on a failed command or a
 * dead connection (EIO) or the deadline (ETIMEDOUT). */
static int
wait_cookies (struct nbd_handle *h, int64_t *cookies, unsigned n,
              uint64_t deadline)
{
  unsigned i, done;
  int ms;

  for (;;) {
    for (i = done = 0; i < n; i++) {
      int r = cookies[i] < 0 ? 1 :
        nbdlib.nbd_aio_command_completed (h, (uint64_t) cookies[i]);
      if (r == -1)
        return errno = EIO, -1;
      if (r == 1)
        cookies[i] = -1, done++;
    }
    if (done == n)
      return 0;
    ms = left_ms (deadline);
    if (ms == 0)
      return errno = ETIMEDOUT, -1;
    if (nbdlib.nbd_poll (h, ms) == -1)
      return errno = EIO, -1;
  }
}

/* Reads [offset, offset + count), aligned to min_block and inside the
 * export, on one connection with up to MAX_IN_FLIGHT commands out. */
static int
read_aligned (struct remote *r, uint8_t *buf, size_t count, uint64_t offset)
{
  uint64_t deadline = now_ms () + r->timeout_ms;
  struct conn *c = conn_get (r, deadline);
  int64_t cookies[MAX_IN_FLIGHT];
  size_t done = 0;
  int ret = 0, e = EIO;

  if (c == NULL)
    return -1;
  while (ret == 0 && done < count) {
    unsigned n = 0;
    for (; n < MAX_IN_FLIGHT && done < count; n++) {
      size_t len = MIN (count - done, (size_t) r->max_block);
      cookies[n] = nbdlib.nbd_aio_pread (c->h, buf + done, len,
                                         offset + done,
                                         NBD_NULL_COMPLETION, 0);
      if (cookies[n] == -1)
        break;
      done += len;
    }
    /* n == 0: the connection cannot take a command (dead) */
    if (n == 0)
      ret = -1;
    else if (wait_cookies (c->h, cookies, n, deadline) == -1)
      ret = -1, e = errno;
  }
  conn_put (r, c, ret == -1);
  errno = e;
  return ret;
}

/* Reads [offset, offset + n) of the export from the remote. */
static int
remote_fetch_data (struct remote *r, void *buf, size_t n, uint64_t offset)
{
  uint64_t start, end;
  uint8_t *bounce;
  int ret, e;

  start = ROUND_DOWN (offset, r->min_block);
  end = MIN (ROUND_UP (offset + n, r->min_block), r->size);
  if (start == offset && end == offset + n) {
    ret = read_aligned (r, buf, n, offset);
    if (ret == 0)
      __atomic_fetch_add (&r->fetched_bytes, n, __ATOMIC_RELAXED);
    return ret;
  }
  /* The remote refuses unaligned requests: read the blocks around. */
  bounce = malloc (end - start);
  if (bounce == NULL)
    return -1;
  ret = read_aligned (r, bounce, end - start, start);
  e = errno;
  if (ret == 0) {
    memcpy (buf, bounce + (offset - start), n);
    __atomic_fetch_add (&r->fetched_bytes, end - start, __ATOMIC_RELAXED);
  }
  free (bounce);
  errno = e;
  return ret;
}

/* ---- the allocation map ------------------------------------------------ */

static uint8_t
map_get (struct remote *r, uint64_t grain)
{
  return __atomic_load_n (&r->map[grain], __ATOMIC_RELAXED);
}

static void
map_set (struct remote *r, uint64_t grain, uint8_t v)
{
  __atomic_store_n (&r->map[grain], v, __ATOMIC_RELAXED);
}

/* One extent of a block-status answer: a grain touched by data is DATA;
 * a grain wholly inside zeros (or ending at the export's end) is ZERO
 * unless data touched it. */
static void
map_note (struct remote *r, uint64_t start, uint64_t len, bool zero)
{
  uint64_t end = MIN (start + len, r->size), g;

  if (start >= end)
    return;
  if (!zero) {
    for (g = start / GRAIN; g <= (end - 1) / GRAIN; g++)
      map_set (r, g, MAP_DATA);
    return;
  }
  for (g = ROUND_UP (start, GRAIN) / GRAIN;
       g * GRAIN < end && (MIN ((g + 1) * GRAIN, r->size) <= end); g++)
    if (map_get (r, g) == MAP_UNKNOWN)
      map_set (r, g, MAP_ZERO);
}

static int
map_extent (void *opaque, const char *context, uint64_t offset,
            uint32_t *entries, size_t nr_entries, int *error)
{
  struct remote *r = opaque;
  size_t i;

  (void) error;
  if (strcmp (context, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0)
    return 0;
  for (i = 0; i + 1 < nr_entries; i += 2) {
    map_note (r, offset, entries[i], entries[i + 1] & LIBNBD_STATE_ZERO);
    offset += entries[i];
  }
  return 0;
}

/* Maps up to MAP_SPAN from the first unknown grain of [offset, offset +
 * n), if any: one block-status request.  -1 if it failed (the caller
 * then treats what is unknown as data). */
static int
map_learn (struct remote *r, uint64_t offset, uint64_t n)
{
  uint64_t deadline = now_ms () + r->timeout_ms, g, last, start, len;
  int64_t cookie;
  struct conn *c;
  int ret = 0;

  last = (offset + n - 1) / GRAIN;
  for (g = offset / GRAIN; g <= last && map_get (r, g) != MAP_UNKNOWN; g++)
    ;
  if (g > last)
    return 0;
  start = g * GRAIN;                    /* GRAIN is a multiple of min_block */
  len = MIN (MAP_SPAN, r->size - start);
  if ((c = conn_get (r, deadline)) == NULL)
    return -1;
  cookie = nbdlib.nbd_aio_block_status (c->h, len, start,
    (nbd_extent_callback) { .callback = map_extent, .user_data = r },
    NBD_NULL_COMPLETION, 0);
  if (cookie == -1 || wait_cookies (c->h, &cookie, 1, deadline) == -1)
    ret = -1;
  conn_put (r, c, ret == -1);
  return ret;
}

/* Whether grain g is to be fetched (DATA, or UNKNOWN: not mapped). */
static bool
map_wants (struct remote *r, uint64_t g)
{
  return map_get (r, g) != MAP_ZERO;
}

/* Reads [offset, offset + n) of the export (basecache_fetch_fn): the
 * grains the map says are zeros are filled in here, the others fetched,
 * one request per run. */
static int
remote_fetch (void *opaque, void *buf, size_t n, uint64_t offset)
{
  struct remote *r = opaque;
  uint64_t end = offset + n, a, b;
  bool want;

  if (r->map == NULL || n == 0)
    return remote_fetch_data (r, buf, n, offset);
  (void) map_learn (r, offset, n);
  for (a = offset; a < end; a = b) {
    want = map_wants (r, a / GRAIN);
    for (b = MIN (ROUND_DOWN (a, GRAIN) + GRAIN, end);
         b < end && map_wants (r, b / GRAIN) == want;
         b = MIN (b + GRAIN, end))
      ;
    if (!want)
      memset ((uint8_t *) buf + (a - offset), 0, b - a);
    else if (remote_fetch_data (r, (uint8_t *) buf + (a - offset), b - a, a)
             == -1)
      return -1;
  }
  return 0;
}

static int
remote_pread (struct source *s, void *buf, size_t count, uint64_t offset)
{
  struct remote *r = (struct remote *) s;
  uint64_t n;

  n = offset < r->size ? MIN ((uint64_t) count, r->size - offset) : 0;
  memset ((uint8_t *) buf + n, 0, count - n);   /* past the end */
  if (n == 0)
    return 0;
  if (r->bc)
    return basecache_read (r->bc, buf, n, offset);
  return remote_fetch (r, buf, n, offset);
}

struct status_answer {
  uint64_t length;
  bool is_data;
  bool seen;
};

static int
status_extent (void *opaque, const char *context, uint64_t offset,
               uint32_t *entries, size_t nr_entries, int *error)
{
  struct status_answer *a = opaque;

  (void) offset;
  if (strcmp (context, LIBNBD_CONTEXT_BASE_ALLOCATION) == 0 &&
      nr_entries >= 2 && !a->seen) {
    a->length = entries[0];
    a->is_data = !(entries[1] & LIBNBD_STATE_ZERO);
    a->seen = true;
  }
  (void) error;
  return 0;
}

/* data_status from the map (learning it first): 0, or -1 if the grain
 * at offset is still unknown. */
static int
map_status (struct remote *r, uint64_t offset, uint64_t count,
            bool *is_data, uint64_t *len)
{
  uint64_t end, g;
  uint8_t v;

  if (r->map == NULL)
    return -1;
  count = MIN (count, r->size - offset);
  (void) map_learn (r, offset, count);
  v = map_get (r, offset / GRAIN);
  if (v == MAP_UNKNOWN)
    return -1;
  end = offset + count;
  for (g = offset / GRAIN + 1; g * GRAIN < end && map_get (r, g) == v; g++)
    ;
  *is_data = v == MAP_DATA;
  *len = MIN (g * GRAIN, end) - offset;
  return 0;
}

/* The remote's base:allocation at offset: data, or reads as zeros. */
static int
remote_data_status (struct source *s, uint64_t offset, uint64_t count,
                    bool quick, bool *is_data, uint64_t *len)
{
  struct remote *r = (struct remote *) s;
  struct status_answer a = { .seen = false };
  uint64_t deadline = now_ms () + r->timeout_ms, start, n;
  int64_t cookie;
  struct conn *c;
  int ret = 0;

  (void) quick;
  *is_data = true;
  *len = count;
  if (offset >= r->size) {
    *is_data = false;
    return 0;
  }
  if (!r->can_status)
    return 0;
  if (map_status (r, offset, count, is_data, len) == 0)
    return 0;
  start = ROUND_DOWN (offset, r->min_block);
  n = ROUND_UP (MIN (count, r->size - offset) + (offset - start),
                r->min_block);
  n = MIN (MIN (n, r->size - start), (uint64_t) 1 << 30);
  if ((c = conn_get (r, deadline)) == NULL)
    return -1;
  cookie = nbdlib.nbd_aio_block_status (c->h, n, start, (nbd_extent_callback) {
      .callback = status_extent, .user_data = &a },
    NBD_NULL_COMPLETION, LIBNBD_CMD_FLAG_REQ_ONE);
  if (cookie == -1 || wait_cookies (c->h, &cookie, 1, deadline) == -1)
    ret = -1;
  conn_put (r, c, ret == -1);
  if (ret == -1 && r->bc)
    return 0;                   /* call it data: the cache may hold it */
  if (ret == -1) {
    errno = EIO;
    return -1;
  }
  if (a.seen && a.length > offset - start) {
    *is_data = a.is_data;
    *len = MIN (count, a.length - (offset - start));
  }
  return 0;
}

static int
remote_pwrite (struct source *s, const void *buf, size_t count,
               uint64_t offset)
{
  (void) s, (void) buf, (void) count, (void) offset;
  errno = EROFS;
  return -1;
}

static int
remote_sync (struct source *s)
{
  (void) s;
  return 0;
}

static int
remote_size (struct source *s, uint64_t *size)
{
  *size = ((struct remote *) s)->size;
  return 0;
}

/* ---- the shared remotes ------------------------------------------------- */

static void
remote_free (struct remote *r)
{
  unsigned i;

  if (r->bc)
    basecache_close (r->bc);
  free (r->map);
  for (i = 0; i < POOL_MAX; i++)
    if (r->conns[i].h) {
      /* queued, never waited for: the remote may be gone or hung */
      nbdlib.nbd_aio_disconnect (r->conns[i].h, 0);
      nbdlib.nbd_close (r->conns[i].h);
    }
  pthread_mutex_destroy (&r->lock);
  pthread_cond_destroy (&r->cond);
  free (r->uri);
  free (r);
}

static int
remote_close (struct source *s)
{
  struct remote *r = (struct remote *) s, **p;
  bool last;

  pthread_mutex_lock (&remotes_lock);
  last = --r->refs == 0;
  if (last)
    for (p = &remotes; *p; p = &(*p)->next)
      if (*p == r) {
        *p = r->next;
        break;
      }
  pthread_mutex_unlock (&remotes_lock);
  if (last)
    remote_free (r);
  return 0;
}

static void
remote_stats (struct source *s, uint64_t *fetched, uint64_t *hits,
              uint64_t *misses)
{
  struct remote *r = (struct remote *) s;
  struct basecache_stats bs;

  *fetched += __atomic_load_n (&r->fetched_bytes, __ATOMIC_RELAXED);
  if (r->bc) {
    basecache_get_stats (r->bc, &bs);
    *hits += bs.hits;
    *misses += bs.misses;
  }
}

static const struct source_ops nbd_ops = {
  .name = "nbd",
  .pread = remote_pread,
  .pwrite = remote_pwrite,
  .sync = remote_sync,
  .size = remote_size,
  .data_status = remote_data_status,
  .close = remote_close,
  .stats = remote_stats,
};

/* A new remote for uri, with its first connection made (the open fails
 * at once, naming the URI, if the remote is unreachable). */
static struct remote *
remote_new (const char *uri, unsigned timeout_ms)
{
  struct remote *r = calloc (1, sizeof *r);
  pthread_condattr_t ca;
  const char *why;

  if (r == NULL || (r->uri = strdup (uri)) == NULL) {
    free (r);
    return error_set (ENOMEM, "%s: out of memory", uri), NULL;
  }
  r->src = (struct source) { .ops = &nbd_ops, .fd = -1 };
  r->timeout_ms = timeout_ms;
  r->refs = 1;
  pthread_mutex_init (&r->lock, NULL);
  pthread_condattr_init (&ca);
  pthread_condattr_setclock (&ca, CLOCK_MONOTONIC);
  pthread_cond_init (&r->cond, &ca);
  pthread_condattr_destroy (&ca);
  r->conns[0].h = connect_uri (uri, timeout_ms, &why);
  if (r->conns[0].h == NULL) {
    error_set (EIO, "%s: cannot connect: %s", uri, why);
    remote_free (r);
    return NULL;
  }
  if (remote_learn (r, r->conns[0].h) == -1) {
    remote_free (r);
    return NULL;
  }
  /* Without memory for the map, every range is simply fetched. */
  if (r->can_status)
    r->map = calloc (DIV_ROUND_UP (r->size, GRAIN) + 1, 1);
  return r;
}

/* Puts the base cache of opts (if any) under r. */
static int
remote_open_cache (struct remote *r, const struct source_opts *opts)
{
  struct basecache_opts bo = {
    .dir = opts->base_cache_dir, .max_bytes = opts->base_cache_size,
    .readahead = READAHEAD,
  };
  char *msg = NULL;

  r->bc = basecache_open (&bo, r->uri, r->size, remote_fetch, r, &msg);
  if (r->bc == NULL) {
    error_set (errno, "%s: base cache in %s: %s", r->uri, bo.dir,
               msg ? msg : strerror (errno));
    free (msg);
    return -1;
  }
  if (msg)
    engine_warn ("%s", msg);
  free (msg);
  return 0;
}

struct source *
source_nbd_open (const char *uri, const struct source_opts *opts)
{
  unsigned timeout = opts && opts->timeout_ms ? opts->timeout_ms
    : REMOTE_DEFAULT_TIMEOUT_MS;
  struct remote *r;

  if (libnbd_load (uri, "remote images") == -1)
    return NULL;
  /* One remote per URI: held while connecting, so that two overlays
   * opening together do not make two pools. */
  pthread_mutex_lock (&remotes_lock);
  for (r = remotes; r; r = r->next)
    if (strcmp (r->uri, uri) == 0) {
      r->refs++;
      break;
    }
  if (r == NULL && (r = remote_new (uri, timeout)) != NULL) {
    if (opts && opts->base_cache_dir && remote_open_cache (r, opts) == -1) {
      remote_free (r);
      r = NULL;
    }
    else {
      r->next = remotes;
      remotes = r;
    }
  }
  pthread_mutex_unlock (&remotes_lock);
  return r ? &r->src : NULL;
}
