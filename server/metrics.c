/* SPDX-License-Identifier: BSD-3-Clause */
/* Counters, and their exposition in the Prometheus text format.
 *
 * Where the figures come from:
 *
 *   per export  requests, bytes, errors by NBD error, latency: counted
 *               here when a reply is queued (metrics_request_done), on
 *               the loop thread; connections open: transmission_start
 *               and conn_close; backing-chain reads, allocation and
 *               metadata cache figures: the engine (image_get_stats)
 *   process     exports, connections, handshakes by outcome, TLS
 *               handshakes, worker queue depth, bytes in flight
 *
 * Cost on the data path: two clock reads and a few plain adds per
 * request, no lock and no atomic read-modify-write.  Every counter here
 * has one writer, the loop thread; the stores are relaxed atomic stores
 * (plain moves on x86-64) so that a reader on another thread would never
 * see a torn value.  The engine's counters are relaxed atomics bumped by
 * the worker threads.
 *
 * Exposition: one family after the other, every series of a family
 * together, as the format requires.  Per-operation series appear once
 * the operation was used on that export (as a labelled child in the
 * Prometheus client libraries), so that thousands of idle exports cost
 * a few lines each.  Label values are escaped (backslash, double quote,
 * newline) and bytes that are not UTF-8 become U+FFFD.
 */
#include <config.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "nbd-protocol.h"

#ifdef HAVE_JSON_C
#include <json.h>
#endif

#define STAT_ADD(p, n) \
  __atomic_store_n ((p), __atomic_load_n ((p), __ATOMIC_RELAXED) + (n), \
                    __ATOMIC_RELAXED)
#define STAT_GET(p) __atomic_load_n ((p), __ATOMIC_RELAXED)

static const char *const op_names[NR_OPS] = {
  "read", "write", "flush", "trim", "zero", "block_status", "cache", "other",
};
static const char *const err_names[NR_ERRS] = {
  "EPERM", "EIO", "ENOMEM", "EINVAL", "ENOSPC", "EOVERFLOW", "ENOTSUP",
  "ESHUTDOWN",
};
static const char *const hs_names[NR_HS] = {
  "ok", "tls_refused", "timeout", "bad_option", "unknown_export", "aborted",
  "failed",
};
/* Latency bucket bounds in ns and as the "le" label; +Inf last. */
static const uint64_t lat_ns[NR_LAT_BUCKETS - 1] = {
  50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
  25000000, 50000000, 100000000, 250000000, 1000000000,
};
static const char *const lat_le[NR_LAT_BUCKETS] = {
  "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
  "0.01", "0.025", "0.05", "0.1", "0.25", "1", "+Inf",
};

/* Process-wide (loop thread writes). */
static uint64_t conns_accepted;
static uint64_t handshakes[NR_HS];
static uint64_t tls_handshakes[2];      /* failed, ok */
static uint64_t bytes_in_flight;

/* ---- counting ----------------------------------------------------------- */

struct export_stats *
metrics_export_new (void)
{
  return calloc (1, sizeof (struct export_stats));
}

void
metrics_export_free (struct export_stats *st)
{
  free (st);
}

static uint64_t
now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static enum metrics_op
op_of (uint16_t type)
{
  switch (type) {
  case NBD_CMD_READ: return OP_READ;
  case NBD_CMD_WRITE: return OP_WRITE;
  case NBD_CMD_FLUSH: return OP_FLUSH;
  case NBD_CMD_TRIM: return OP_TRIM;
  case NBD_CMD_WRITE_ZEROES: return OP_ZERO;
  case NBD_CMD_BLOCK_STATUS: return OP_BLOCK_STATUS;
  case NBD_CMD_CACHE: return OP_CACHE;
  default: return OP_OTHER;
  }
}

static enum metrics_err
err_of (uint32_t err)
{
  switch (err) {
  case NBD_EPERM: return ERR_EPERM;
  case NBD_ENOMEM: return ERR_ENOMEM;
  case NBD_EINVAL: return ERR_EINVAL;
  case NBD_ENOSPC: return ERR_ENOSPC;
  case NBD_EOVERFLOW: return ERR_EOVERFLOW;
  case NBD_ENOTSUP: return ERR_ENOTSUP;
  case NBD_ESHUTDOWN: return ERR_ESHUTDOWN;
  default: return ERR_EIO;
  }
}

void
metrics_request_start (struct req *r)
{
  r->start_ns = now_ns ();
  r->inflight_bytes = 0;
  if (r->error == 0 &&
      (r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE)) {
    r->inflight_bytes = r->count;
    STAT_ADD (&bytes_in_flight, r->count);
  }
}

void
metrics_request_put (struct req *r)
{
  if (r->inflight_bytes) {
    STAT_ADD (&bytes_in_flight, -(uint64_t) r->inflight_bytes);
    r->inflight_bytes = 0;
  }
}

static unsigned
lat_bucket (uint64_t ns)
{
  unsigned i;

  for (i = 0; i < NR_LAT_BUCKETS - 1; i++)
    if (ns <= lat_ns[i])
      return i;
  return NR_LAT_BUCKETS - 1;
}

void
metrics_request_done (struct req *r)
{
  struct op_stats *o = &r->exp->stats->op[op_of (r->type)];
  uint64_t ns = now_ns () - r->start_ns;

  STAT_ADD (&o->requests, 1);
  STAT_ADD (&o->lat_sum_ns, ns);
  STAT_ADD (&o->lat[lat_bucket (ns)], 1);
  if (r->error)
    STAT_ADD (&o->errors[err_of ((uint32_t) r->error)], 1);
  else if (r->type != NBD_CMD_FLUSH)
    STAT_ADD (&o->bytes, r->count);
}

void
metrics_conn_accepted (void)
{
  STAT_ADD (&conns_accepted, 1);
}

void
metrics_handshake (enum hs_outcome o)
{
  STAT_ADD (&handshakes[o], 1);
}

void
metrics_tls_handshake (bool ok)
{
  STAT_ADD (&tls_handshakes[ok], 1);
}

void
metrics_export_conn (const struct export *exp, int delta)
{
  STAT_ADD (&exp->stats->connections, (uint64_t) (int64_t) delta);
  export_stats_conn (exp, delta);
}

/* ---- the exposition ------------------------------------------------------ */

struct out {
  char *p;
  size_t len, cap;
  bool oom;
  bool om;                      /* OpenMetrics rather than text 0.0.4 */
};

static bool
reserve (struct out *o, size_t n)
{
  char *p;
  size_t cap;

  if (o->oom)
    return false;
  if (o->len + n <= o->cap)
    return true;
  cap = o->cap ? o->cap : 65536;
  while (cap < o->len + n)
    cap *= 2;
  p = realloc (o->p, cap);
  if (p == NULL) {
    o->oom = true;
    return false;
  }
  o->p = p;
  o->cap = cap;
  return true;
}

static void
put (struct out *o, const char *s, size_t n)
{
  if (reserve (o, n)) {
    memcpy (o->p + o->len, s, n);
    o->len += n;
  }
}

static void
puts_ (struct out *o, const char *s)
{
  put (o, s, strlen (s));
}

/* Decimal digits by hand: a scrape of thousands of exports writes tens
 * of thousands of numbers, and snprintf was a tenth of its time. */
static void
put_u64 (struct out *o, uint64_t v)
{
  char b[24];
  char *p = b + sizeof b;

  do {
    *--p = (char) ('0' + v % 10);
    v /= 10;
  } while (v);
  put (o, p, (size_t) (b + sizeof b - p));
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if none. */
static size_t
utf8_len (const unsigned char *s, size_t n)
{
  size_t len, i;

  if (s[0] < 0x80)
    return 1;
  len = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 :
    s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
  if (len == 0 || len > n || s[0] > 0xf4)
    return 0;
  for (i = 1; i < len; i++)
    if ((s[i] & 0xc0) != 0x80)
      return 0;
  /* overlong 3- and 4-byte forms, surrogates, past U+10FFFF */
  if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xf0 && s[1] < 0x90) ||
      (s[0] == 0xed && s[1] >= 0xa0) || (s[0] == 0xf4 && s[1] >= 0x90))
    return 0;
  return len;
}

/* A label value, escaped as the text format asks. */
static void
put_label (struct out *o, const char *v)
{
  const unsigned char *s = (const unsigned char *) v;
  size_t n, len;

  /* Most names are plain ASCII with nothing to escape: one copy. */
  for (n = 0; s[n] >= 0x20 && s[n] < 0x80 && s[n] != '\\' && s[n] != '"';
       n++)
    ;
  if (s[n] == '\0') {
    put (o, v, n);
    return;
  }
  n = strlen (v);
  while (n) {
    if (*s == '\\' || *s == '"')
      put (o, *s == '\\' ? "\\\\" : "\\\"", 2);
    else if (*s == '\n')
      put (o, "\\n", 2);
    else if ((len = utf8_len (s, n)) != 0) {
      put (o, (const char *) s, len);
      s += len - 1;
      n -= len - 1;
    }
    else
      put (o, "\xef\xbf\xbd", 3);
    s++;
    n--;
  }
}

/* In OpenMetrics a counter's family is named without the "_total" its
 * samples carry. */
static void
family (struct out *o, const char *name, const char *type, const char *help)
{
  size_t n = strlen (name);

  if (o->om && strcmp (type, "counter") == 0 && n > 6 &&
      strcmp (name + n - 6, "_total") == 0)
    n -= 6;
  puts_ (o, "# HELP ");
  put (o, name, n);
  put (o, " ", 1);
  puts_ (o, help);
  puts_ (o, "\n# TYPE ");
  put (o, name, n);
  put (o, " ", 1);
  puts_ (o, type);
  put (o, "\n", 1);
}

/* name{export="E"[,k="v"]...} value: labels as name/value pairs, NULL
 * ended. */
static void
series (struct out *o, const char *name, const char *exp, uint64_t v, ...)
{
  const char *k;
  bool first = true;
  va_list ap;

  puts_ (o, name);
  if (exp) {
    puts_ (o, "{export=\"");
    put_label (o, exp);
    put (o, "\"", 1);
    first = false;
  }
  va_start (ap, v);
  while ((k = va_arg (ap, const char *)) != NULL) {
    put (o, first ? "{" : ",", 1);
    puts_ (o, k);
    puts_ (o, "=\"");
    put_label (o, va_arg (ap, const char *));
    put (o, "\"", 1);
    first = false;
  }
  va_end (ap);
  puts_ (o, first ? " " : "} ");
  put_u64 (o, v);
  put (o, "\n", 1);
}

/* A family of one series without labels: a gauge or a counter. */
static void
scalar (struct out *o, const char *name, const char *type, uint64_t v,
        const char *help)
{
  family (o, name, type, help);
  series (o, name, NULL, v, NULL);
}

static void
gauge (struct out *o, const char *name, uint64_t v, const char *help)
{
  scalar (o, name, "gauge", v, help);
}

static void
counter (struct out *o, const char *name, uint64_t v, const char *help)
{
  scalar (o, name, "counter", v, help);
}

static void
format_handshakes (struct out *o)
{
  unsigned i;

  family (o, "cowbd_handshakes_total", "counter",
          "Handshakes by how they ended.");
  for (i = 0; i < NR_HS; i++)
    series (o, "cowbd_handshakes_total", NULL, STAT_GET (&handshakes[i]),
            "outcome", hs_names[i], NULL);
  family (o, "cowbd_tls_handshakes_total", "counter",
          "TLS handshakes after STARTTLS by result.");
  series (o, "cowbd_tls_handshakes_total", NULL,
          STAT_GET (&tls_handshakes[1]), "outcome", "ok", NULL);
  series (o, "cowbd_tls_handshakes_total", NULL,
          STAT_GET (&tls_handshakes[0]), "outcome", "failed", NULL);
}

static void
format_process (struct out *o)
{
  gauge (o, "cowbd_exports", exports_count (), "Exports served.");
  gauge (o, "cowbd_connections", conns_count (), "Client connections open.");
  counter (o, "cowbd_connections_accepted_total", STAT_GET (&conns_accepted),
           "Client connections accepted.");
  format_handshakes (o);
  gauge (o, "cowbd_worker_queue_depth", workers_queue_depth (),
         "Requests waiting for a worker thread.");
  gauge (o, "cowbd_bytes_in_flight", STAT_GET (&bytes_in_flight),
         "Payload bytes of requests read and not yet answered.");
  gauge (o, "cowbd_max_inflight_used_bytes", reqpool_charged (),
         "Bytes of request buffers charged to --max-inflight.");
  gauge (o, "cowbd_request_buffer_bytes", reqpool_held (),
         "Bytes of request buffers the connections hold, free or in use.");
  gauge (o, "cowbd_request_buffer_peak_bytes", reqpool_held_peak (),
         "The most request buffer bytes held at once since start.");
  counter (o, "cowbd_request_buffer_allocations_total",
           reqpool_allocations (),
           "Request buffers allocated (each is then reused).");
}

/* One counter per export and operation, for the operations used. */
static void
format_op_counter (struct out *o, const char *name, const char *help,
                   size_t off)
{
  size_t i;
  unsigned k;

  family (o, name, "counter", help);
  for (i = 0; i < exports_count (); i++) {
    const struct export *e = exports_at (i);

    for (k = 0; k < NR_OPS; k++) {
      const struct op_stats *s = &e->stats->op[k];
      uint64_t v = STAT_GET ((const uint64_t *) ((const char *) s + off));

      if (STAT_GET (&s->requests))
        series (o, name, e->name, v, "op", op_names[k], NULL);
    }
  }
}

static void
format_errors (struct out *o)
{
  size_t i;
  unsigned k, j;

  family (o, "cowbd_export_errors_total", "counter",
          "Requests that failed, by operation and NBD error.");
  for (i = 0; i < exports_count (); i++) {
    const struct export *e = exports_at (i);

    for (k = 0; k < NR_OPS; k++)
      for (j = 0; j < NR_ERRS; j++) {
        uint64_t v = STAT_GET (&e->stats->op[k].errors[j]);
        if (v)
          series (o, "cowbd_export_errors_total", e->name, v,
                  "op", op_names[k], "error", err_names[j], NULL);
      }
  }
}

static void
put_seconds (struct out *o, uint64_t ns)
{
  char b[32];
  int n = snprintf (b, sizeof b, "%" PRIu64 ".%09" PRIu64, ns / 1000000000u,
                    ns % 1000000000u);

  put (o, b, (size_t) n);
}

static void
format_histogram_one (struct out *o, const char *exp, unsigned k,
                      const struct op_stats *s)
{
  const char *name = "cowbd_export_request_duration_seconds";
  char bucket[64];
  uint64_t cum = 0;
  unsigned b;

  snprintf (bucket, sizeof bucket, "%s_bucket", name);
  for (b = 0; b < NR_LAT_BUCKETS; b++) {
    cum += STAT_GET (&s->lat[b]);
    series (o, bucket, exp, cum, "op", op_names[k], "le", lat_le[b], NULL);
  }
  puts_ (o, name);
  puts_ (o, "_sum{export=\"");
  put_label (o, exp);
  puts_ (o, "\",op=\"");
  puts_ (o, op_names[k]);
  puts_ (o, "\"} ");
  put_seconds (o, STAT_GET (&s->lat_sum_ns));
  put (o, "\n", 1);
  snprintf (bucket, sizeof bucket, "%s_count", name);
  series (o, bucket, exp, cum, "op", op_names[k], NULL);
}

static void
format_histograms (struct out *o)
{
  size_t i;
  unsigned k;

  family (o, "cowbd_export_request_duration_seconds", "histogram",
          "Time from reading a request to queueing its reply.");
  for (i = 0; i < exports_count (); i++) {
    const struct export *e = exports_at (i);

    for (k = 0; k < NR_OPS; k++)
      if (STAT_GET (&e->stats->op[k].requests))
        format_histogram_one (o, e->name, k, &e->stats->op[k]);
  }
}

/* Engine figures, one series per export. */
enum engine_fig { FIG_BACKING, FIG_ALLOC, FIG_HITS, FIG_MISSES, FIG_EVICT,
                  FIG_CACHE_BYTES, FIG_REMOTE, FIG_RC_HITS, FIG_RC_MISSES };

static uint64_t
engine_fig (const struct image_stats *s, enum engine_fig f)
{
  switch (f) {
  case FIG_BACKING: return s->backing_read_bytes;
  case FIG_ALLOC: return s->allocated_bytes;
  case FIG_HITS: return s->cache_hits;
  case FIG_MISSES: return s->cache_misses;
  case FIG_EVICT: return s->cache_evictions;
  case FIG_CACHE_BYTES: return s->cache_bytes;
  case FIG_REMOTE: return s->remote_fetched_bytes;
  case FIG_RC_HITS: return s->remote_cache_hits;
  case FIG_RC_MISSES: return s->remote_cache_misses;
  }
  abort ();
}

static void
format_engine (struct out *o, const struct image_stats *st)
{
  static const struct {
    const char *name, *type, *help;
  } figs[] = {
    { "cowbd_export_backing_read_bytes_total", "counter",
      "Bytes read from the backing chain (read amplification)." },
    { "cowbd_export_allocated_bytes", "gauge",
      "Bytes the overlay's host file occupies." },
    { "cowbd_export_metadata_cache_hits_total", "counter",
      "Metadata table lookups served by the cache." },
    { "cowbd_export_metadata_cache_misses_total", "counter",
      "Metadata tables loaded into the cache." },
    { "cowbd_export_metadata_cache_evictions_total", "counter",
      "Metadata tables evicted from the cache." },
    { "cowbd_export_metadata_cache_bytes", "gauge",
      "Bytes the cached metadata tables take (compact ones at their "
      "compact size)." },
    { "cowbd_export_remote_fetched_bytes_total", "counter",
      "Bytes sent by the remote (NBD) backing images the export reads "
      "(shared by every export over them)." },
    { "cowbd_export_remote_cache_hits_total", "counter",
      "Reads of remote backing images served by the base cache alone." },
    { "cowbd_export_remote_cache_misses_total", "counter",
      "Reads of remote backing images the base cache fetched for." },
  };
  size_t i;
  unsigned f;

  for (f = 0; f < sizeof figs / sizeof figs[0]; f++) {
    family (o, figs[f].name, figs[f].type, figs[f].help);
    for (i = 0; i < exports_count (); i++)
      series (o, figs[f].name, exports_at (i)->name,
              engine_fig (&st[i], (enum engine_fig) f), NULL);
  }
}

static void
format_exports (struct out *o)
{
  size_t i, n = exports_count ();
  struct image_stats *st = calloc (n ? n : 1, sizeof *st);

  if (st == NULL) {
    o->oom = true;
    return;
  }
  for (i = 0; i < n; i++)
    exports_engine_stats (i, &st[i]);
  family (o, "cowbd_export_connections", "gauge",
          "Connections serving the export.");
  for (i = 0; i < n; i++)
    series (o, "cowbd_export_connections", exports_at (i)->name,
            STAT_GET (&exports_at (i)->stats->connections), NULL);
  format_op_counter (o, "cowbd_export_requests_total",
                     "Requests answered, by operation.",
                     offsetof (struct op_stats, requests));
  format_op_counter (o, "cowbd_export_bytes_total",
                     "Bytes of requests that succeeded, by operation.",
                     offsetof (struct op_stats, bytes));
  format_errors (o);
  format_histograms (o);
  format_engine (o, st);
  free (st);
}

char *
metrics_format (bool openmetrics, size_t *len)
{
  struct out o = { .om = openmetrics };

  format_process (&o);
  format_exports (&o);
  if (openmetrics)
    puts_ (&o, "# EOF\n");
  if (o.oom) {
    free (o.p);
    return NULL;
  }
  *len = o.len;
  return o.p;
}

#ifdef HAVE_JSON_C
/* ---- the control socket's query-stats --------------------------------- */

static json_object *
json_u64 (uint64_t v)
{
  return json_object_new_int64 (v > INT64_MAX ? INT64_MAX : (int64_t) v);
}

static json_object *
export_json (size_t i)
{
  const struct export *e = exports_at (i);
  json_object *o = json_object_new_object ();
  json_object *ops = json_object_new_object ();
  struct image_stats st;
  unsigned k, j;

  exports_engine_stats (i, &st);
  json_object_object_add (o, "name", json_object_new_string (e->name));
  json_object_object_add (o, "connections",
                          json_u64 (STAT_GET (&e->stats->connections)));
  for (k = 0; k < NR_OPS; k++) {
    const struct op_stats *s = &e->stats->op[k];
    json_object *op, *errs;
    uint64_t n = STAT_GET (&s->requests);

    if (n == 0)
      continue;
    op = json_object_new_object ();
    errs = json_object_new_object ();
    json_object_object_add (op, "requests", json_u64 (n));
    json_object_object_add (op, "bytes", json_u64 (STAT_GET (&s->bytes)));
    for (j = 0; j < NR_ERRS; j++)
      if (STAT_GET (&s->errors[j]))
        json_object_object_add (errs, err_names[j],
                                json_u64 (STAT_GET (&s->errors[j])));
    json_object_object_add (op, "errors", errs);
    json_object_object_add (op, "latency-sum-ns",
                            json_u64 (STAT_GET (&s->lat_sum_ns)));
    json_object_object_add (ops, op_names[k], op);
  }
  json_object_object_add (o, "operations", ops);
  json_object_object_add (o, "backing-read-bytes",
                          json_u64 (st.backing_read_bytes));
  json_object_object_add (o, "allocated-bytes", json_u64 (st.allocated_bytes));
  json_object_object_add (o, "metadata-cache-hits", json_u64 (st.cache_hits));
  json_object_object_add (o, "metadata-cache-misses",
                          json_u64 (st.cache_misses));
  json_object_object_add (o, "metadata-cache-evictions",
                          json_u64 (st.cache_evictions));
  json_object_object_add (o, "metadata-cache-bytes",
                          json_u64 (st.cache_bytes));
  json_object_object_add (o, "remote-fetched-bytes",
                          json_u64 (st.remote_fetched_bytes));
  json_object_object_add (o, "remote-cache-hits",
                          json_u64 (st.remote_cache_hits));
  json_object_object_add (o, "remote-cache-misses",
                          json_u64 (st.remote_cache_misses));
  return o;
}

int
metrics_add_json (void *obj, const char *only)
{
  json_object *o = obj, *list = json_object_new_array (), *hs;
  size_t i, n = exports_count ();
  bool found = false;
  unsigned k;

  for (i = 0; i < n; i++)
    if (only == NULL || strcmp (exports_at (i)->name, only) == 0) {
      json_object_array_add (list, export_json (i));
      found = true;
    }
  if (only && !found) {
    json_object_put (list);
    return -1;
  }
  json_object_object_add (o, "connections", json_u64 (conns_count ()));
  json_object_object_add (o, "connections-accepted",
                          json_u64 (STAT_GET (&conns_accepted)));
  hs = json_object_new_object ();
  for (k = 0; k < NR_HS; k++)
    json_object_object_add (hs, hs_names[k],
                            json_u64 (STAT_GET (&handshakes[k])));
  json_object_object_add (o, "handshakes", hs);
  json_object_object_add (o, "worker-queue-depth",
                          json_u64 (workers_queue_depth ()));
  json_object_object_add (o, "bytes-in-flight",
                          json_u64 (STAT_GET (&bytes_in_flight)));
  json_object_object_add (o, "exports", list);
  return 0;
}
#endif /* HAVE_JSON_C */
