/* SPDX-License-Identifier: BSD-3-Clause */
/* The private interfaces of the cowbd server, one section per file.
 *
 * Threads: the thread leading the event loop owns every socket, every
 * struct conn and the export table; the loop passes between threads
 * (workers.c, "Leader and followers"), never two at once, and "the
 * loop" below means whichever leads it.  Worker threads only run engine
 * calls on a struct req handed to them and build its reply, touching
 * nothing else of the connection.  A request goes:
 *
 *   loop: read header (transmission.c) -> validate -> [read payload]
 *     -> workers_submit ----> worker: commands.c runs image_*, reply.c
 *                                     builds the reply's iovec
 *   loop: <---- ev_async (workers.c) -- transmission_complete
 *     -> conn_queue_reply (conn.c) -> writev through the transport
 *     -> req_put: the request and its buffer go back to the pool
 *
 * On a plain transport the worker writes the reply itself while its
 * data is still in its core's cache (conn_send_from_worker), when no
 * other reply is being written or waiting; the loop then only gives the
 * request back (and writes whatever the worker could not).  The
 * connection's send_lock guards the output queue and that hand-over.
 */
#ifndef COWBD_SERVER_INTERNAL_H
#define COWBD_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <stdarg.h>
#include <syslog.h>

#include <ev.h>

#include "image.h"
#include "registry.h"
#include "transport.h"

/* ---- limits ------------------------------------------------------------ */

/* Largest READ or WRITE payload (advertised as the maximum block size). */
#define MAX_PAYLOAD        (32u << 20)
/* Largest option payload read into memory.  A longer one (only names
 * of at most 4 KiB and meta context queries are ever long) is a client
 * wasting our time: it is refused with NBD_REP_ERR_TOO_BIG and dropped,
 * never read. */
#define MAX_OPTION_LEN     (64u << 10)
/* Per connection: requests read but not yet answered, and the bytes of
 * request buffers a connection may hold.  Past either, the server stops
 * reading that socket until replies have gone out. */
#define MAX_REQS_IN_FLIGHT 256
#define MAX_CONN_BUFFERS   (64u << 20)
/* Handshake replies waiting to be written; past this the connection
 * stops reading options. */
#define MAX_HANDSHAKE_OUT  (1u << 20)

/* ---- main.c: the configuration from the command line -------------------- */

struct config {
  bool readonly;                /* -r */
  unsigned verbose;             /* -v: 1, -vv: 2 */
  bool single;                  /* -s: one connection on stdin/stdout */
  unsigned threads;             /* -t */
  uint64_t cache_size;          /* --cache-size, 0: the engine's default */
  unsigned remote_timeout_ms;   /* --remote-timeout, 0: the engine's */
  const char *base_cache_dir;   /* --base-cache, or NULL */
  uint64_t base_cache_size;     /* --base-cache-size, 0: no bound */
  const char *format;           /* -f, NULL: probe */
  const char *port;             /* -p */
  const char *ipaddr;           /* -i */
  const char *unix_path;        /* -U PATH, or the private one of -U - */
  const char *run;              /* --run */
  /* TLS (tls.c, transport-tls.c) */
  enum { TLS_OFF, TLS_ON, TLS_REQUIRE } tls;  /* --tls */
  const char *tls_certificates; /* --tls-certificates=DIR */
  const char *tls_psk;          /* --tls-psk=FILE */
  const char *tls_priority;     /* --tls-priority=STRING, NULL: system */
  bool tls_verify_peer;         /* --tls-verify-peer */
  /* Limits on clients (conn.c) */
  unsigned handshake_limit;     /* --handshake-limit seconds, 0: none */
  unsigned max_connections;     /* --max-connections, 0: unlimited */
  uint64_t max_inflight;        /* --max-inflight bytes, all connections */
  /* --backing-dir (repeatable), NULL-terminated; NULL if none given:
   * see registry_config.backing_dirs */
  const char **backing_dirs;
};
#define DEFAULT_MAX_INFLIGHT (256u << 20)
#define DEFAULT_HANDSHAKE_LIMIT 10  /* as qemu-nbd since 9.1 */
#define DEFAULT_MAX_CONNECTIONS 1000
extern struct config cfg;

/* Starts the graceful shutdown (signals, end of --run, end of -s). */
void server_shutdown (int exit_status);

/* ---- log.c ------------------------------------------------------------- */

struct conn;
struct req;
struct export;

/* --log=stderr|syslog[:SOCKET] (NULL: stderr); -1 after saying why. */
int log_setup (const char *spec);
/* Whether a line of syslog priority prio is written (LOG_NOTICE and
 * worse always, LOG_INFO with -v, LOG_DEBUG with -vv). */
bool log_enabled (int prio);
void log_msg (int prio, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));
void log_vmsg (int prio, const char *conn_prefix, const char *fmt,
               va_list ap);
/* A line about a connection: "connection ID (PEER): ...". */
void log_conn (const struct conn *c, int prio, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));
/* For image_set_warn. */
void log_engine_warning (const char *msg);
/* A budget for a kind of line that clients can cause at will (unknown
 * export names): at most burst lines, refilled at per_sec a second.
 * log_allow says whether one more line may be written now; when it
 * may after some were held back, it first logs how many. */
struct log_budget {
  double burst, per_sec;
  double tokens;
  uint64_t last_ns;
  unsigned long held_back;
};
bool log_allow (struct log_budget *b, const char *what);
#define log_error(...)   log_msg (LOG_ERR, __VA_ARGS__)
#define log_notice(...)  log_msg (LOG_NOTICE, __VA_ARGS__)
#define log_verbose(...) log_msg (LOG_INFO, __VA_ARGS__)

/* ---- names.c: protocol numbers as names, NULL when unknown ------------- */

const char *name_option (uint32_t opt);
const char *name_command (uint16_t type);    /* "read", "zero"... */
const char *name_error (uint32_t nbd_err);   /* "EINVAL"... */

/* ---- metrics.c: counters and their exposition --------------------------- */

/* Operations as the "op" label names them. */
enum metrics_op {
  OP_READ, OP_WRITE, OP_FLUSH, OP_TRIM, OP_ZERO, OP_BLOCK_STATUS, OP_CACHE,
  OP_OTHER, NR_OPS
};
/* NBD errors, in the order of the protocol's list. */
enum metrics_err {
  ERR_EPERM, ERR_EIO, ERR_ENOMEM, ERR_EINVAL, ERR_ENOSPC, ERR_EOVERFLOW,
  ERR_ENOTSUP, ERR_ESHUTDOWN, NR_ERRS
};
/* Request latency buckets (upper bounds), the last is +Inf. */
#define NR_LAT_BUCKETS 14
/* How a connection's handshake ended. */
enum hs_outcome {
  HS_OK, HS_TLS_REFUSED, HS_TIMEOUT, HS_BAD_OPTION, HS_UNKNOWN_EXPORT,
  HS_ABORTED, HS_FAILED, NR_HS
};

/* The counters of one export.  Written by the loop thread only (every
 * request is counted when its reply is queued, which happens there),
 * with relaxed atomic stores so that a reader on another thread never
 * sees a torn value: no lock, no atomic read-modify-write. */
struct op_stats {
  uint64_t requests, bytes, lat_sum_ns;
  uint64_t errors[NR_ERRS];
  uint64_t lat[NR_LAT_BUCKETS];   /* per bucket, not cumulative */
};
struct export_stats {
  uint64_t connections;           /* open now */
  struct op_stats op[NR_OPS];
};

struct export_stats *metrics_export_new (void);
void metrics_export_free (struct export_stats *st);
/* A request was read (loop thread): its clock starts, and a valid READ
 * or WRITE's payload counts as bytes in flight until req_put. */
void metrics_request_start (struct req *r);
/* Its reply is queued (loop thread). */
void metrics_request_done (struct req *r);
void metrics_request_put (struct req *r);
void metrics_conn_accepted (void);
void metrics_handshake (enum hs_outcome o);
void metrics_tls_handshake (bool ok);
/* A connection starts or stops using an export. */
void metrics_export_conn (const struct export *exp, int delta);
/* The exposition in the Prometheus text format (version 0.0.4) or in
 * OpenMetrics 1.0.0, into a malloc'd buffer; NULL on ENOMEM.  Loop
 * thread. */
char *metrics_format (bool openmetrics, size_t *len);
/* query-stats: adds the figures (per process, and per export, or of the
 * export named only) to obj, a json_object.  -1 if only names no export.
 * Loop thread. */
int metrics_add_json (void *obj, const char *only);

/* ---- metrics-http.c: --metrics=[ADDR:]PORT | unix:PATH ---------------- */

/* Opens the listening socket (before --fork); -1 after saying why. */
int metrics_listen (const char *spec);
/* Serves GET /metrics on the loop. */
int metrics_start (struct ev_loop *loop);
void metrics_stop (struct ev_loop *loop);
/* "http://127.0.0.1:9100/metrics" or "unix:PATH", NULL if none. */
const char *metrics_where (void);

/* ---- exports.c: the export table ---------------------------------------- */

/* One connection's view of its export: a registry reference (which
 * keeps the image open) and what the handshake and the requests read. */
struct export {
  struct registry_export *ref;  /* NULL: an INFO answer (no image) */
  struct registry_info info;    /* for INFO: what name and description
                                   point to */
  const char *name;             /* NAME=, the file's base name, or the
                                   file name in dir= */
  const char *description;      /* "qed, 10 GiB, backing base.raw" */
  struct image *img;            /* shared by every connection */
  uint64_t size;
  bool readonly;
  uint32_t preferred_block;     /* NBD_INFO_BLOCK_SIZE preferred */
  struct export_stats *stats;   /* its name's entry in the stats table */
  struct export_entry *entry;   /* that entry (loop thread) */
};

/* Adds "[NAME=]IMAGE" or "dir=DIR" from the command line. */
int exports_add (const char *arg);
/* Opens every image once (then closes it again) to refuse bad ones and
 * builds the registry; -1 (after saying why) if any fails. */
int exports_open (void);
/* Flushes and closes every image; -1 if any close failed. */
int exports_close (void);
/* --clone-from=[TEMPLATE=]BASE (-1 after saying why), --clone-dir,
 * --max-exports (0: no cap); set before exports_open. */
int exports_clone_from (const char *arg);
void exports_clone_dir (const char *dir);
void exports_max (size_t n);
size_t exports_nclones (void);
/* The registry (control-cmds.c calls it on workers). */
struct registry *exports_registry (void);
/* The default export's name ("" in dir= mode), for --run. */
const char *exports_default_name (void);
/* Worker threads only (they may open images): the export a client asks
 * for by name ("" is the default), held until export_release; NULL
 * after image_set_error.  export_exists and exports_list (which
 * rescans dir=) likewise. */
struct export *export_get (const char *name, size_t len);
/* For NBD_OPT_INFO: the export as export_get would give it, without
 * opening it (img is NULL). */
struct export *export_info (const char *name, size_t len);
void export_release (struct export *exp);
bool export_exists (const char *name, size_t len);
int exports_list (registry_list_fn fn, void *opaque);
/* The stats table (loop thread only): one entry per export name that
 * has been served, and every command-line export from the start.
 * export_stats_attach gives a looked-up export its entry's stats (-1 on
 * ENOMEM); export_stats_conn counts a connection in or out of it, and
 * the entry points to the image only while a connection holds it. */
int export_stats_attach (struct export *exp);
void export_stats_conn (const struct export *exp, int delta);
size_t exports_count (void);
/* name and stats of entry i (img is never set: see exports_engine_stats). */
const struct export *exports_at (size_t i);
/* Engine figures of entry i: the open image's, else the last seen when
 * its last connection left (zeros if none). */
void exports_engine_stats (size_t i, struct image_stats *st);
/* Transmission flags of an export for a connection (DF only with
 * structured replies). */
uint16_t export_eflags (const struct export *exp, bool structured);

/* ---- spin.c: polling before sleeping ------------------------------------ */

/* Requests were read: the loop polls without sleeping for a while. */
void spin_busy (struct ev_loop *loop, unsigned long requests);
/* ---- conn.c: connections, their input and output ------------------------ */

/* Work other than requests: run on a worker, then done on the loop. */
struct job {
  struct job *next;
  void (*run) (struct job *j);
  void (*done) (struct job *j);
  /* From workers_submit_job until done is called (loop thread): a job
   * submitted again meanwhile would be linked into a list it is on. */
  bool queued;
};

/* A FIFO of requests linked through next. */
struct req_list {
  struct req *head, *tail;
};

struct conn;
struct req;

/* What an input handler returns. */
#define INPUT_OK     0          /* consumed, continue */
#define INPUT_PAUSE  1          /* not consumed: call again when resumed */
#define INPUT_CLOSE  (-1)       /* protocol violation: close */

/* Called with the n bytes asked for by conn_expect (data), or NULL after
 * a sink or a discard completed. */
typedef int (*input_fn) (struct conn *c, const char *data);

struct conn {
  struct conn *prev, *next;     /* all connections */
  unsigned long id;             /* for logs */
  char peer[80];
  int hs_outcome;               /* enum hs_outcome, -1: not yet known */

  struct ev_loop *loop;
  ev_io rio, wio;               /* rfd readable, wfd writable */
  int rfd, wfd;
  const struct transport *tr;
  void *tr_data;

  bool dead;                    /* closed: waiting for in_flight == 0 */
  bool draining;                /* no more input: close once all is out */
  bool read_paused;             /* a handler asked to wait (backpressure) */
  bool in_input;                /* process_input is running */
  bool freeing;                 /* on the list of connections to free */

  /* Input: bytes read but not consumed are ibuf[istart, iend). */
  char *ibuf;
  size_t istart, iend;
  enum { IN_BYTES, IN_SINK, IN_DISCARD } imode;
  size_t ineed;                 /* IN_BYTES: bytes the handler wants */
  char *sink;                   /* IN_SINK: destination of the payload */
  size_t sink_left;
  uint64_t discard_left;        /* IN_DISCARD */
  input_fn on_input;

  /* Output: handshake bytes first, then queued replies in order.  In
   * transmission, workers write replies too (conn_send_from_worker):
   * woff, wlen, outq_*, writer and wclosed are then read and written
   * under send_lock only.  A worker writes only while it holds the
   * writer role (the loop writes nothing meanwhile), and only when
   * nothing else waits to go out. */
  char *wbuf;
  size_t wlen, woff, wcap;
  struct req *outq_head, *outq_tail;
  pthread_mutex_t send_lock;
  struct req_list pending;      /* workers' replies waiting for the
                                   writer (send_lock) */
  struct job drain_job;         /* a worker to write them (conn.c) */
  bool drain_queued;            /* drain_job is queued or its done has
                                   not run yet (send_lock) */
  bool direct;                  /* workers may write (plain transport, in
                                   transmission): set before any request */
  bool writer;                  /* a worker is writing a reply */
  bool wclosed;                 /* conn_close ran: write nothing more */
  bool close_later;             /* wfd is closed when freed (a worker was
                                   writing to it at conn_close) */

  /* TLS (STARTTLS): the transport to switch to once the ACK is out, the
   * handshake in progress and its deadline, and whether it is done. */
  const struct transport *tls_next;
  void *tls_next_data;
  bool tls_handshaking;
  bool tls;
  ev_timer tls_timer;

  /* The deadline of the whole handshake (--handshake-limit), from accept
   * to transmission_start, STARTTLS included. */
  ev_timer hs_timer;

  /* Handshake state (handshake.c, meta-context.c). */
  bool fixed_newstyle;
  bool no_zeroes;
  bool structured;              /* NBD_OPT_STRUCTURED_REPLY acknowledged */
  uint32_t opt, optlen;         /* the option being read */
  char *optbuf;
  char *meta_name;              /* export of the last SET_META_CONTEXT */
  uint32_t meta_namelen;
  bool meta_base, meta_depth;   /* contexts it selected */
  bool looking_up;              /* a lookup job is with the workers */

  /* Transmission state (transmission.c): the export, held until the
   * connection is freed. */
  struct export *exp;
  uint16_t eflags;
  bool ctx_base, ctx_depth;     /* block status contexts in use */
  struct req *cur_req;          /* the write whose payload is read */

  /* Requests (reqpool.c): free ones, and how many are out. */
  struct req *free_reqs;
  unsigned nreqs;               /* allocated */
  unsigned in_flight;           /* handed out by req_get, not yet put */
  unsigned long requests;       /* request headers read (spin.c) */
  size_t buf_bytes;             /* capacity of all buffers we hold */
  bool wait_global;             /* paused for --max-inflight (reqpool.c) */
};

/* Takes ownership of the descriptors and starts the handshake (and its
 * deadline); NULL when it failed or --max-connections are open (the
 * descriptors are closed: the client sees the connection end). */
struct conn *conn_new (struct ev_loop *loop, int rfd, int wfd,
                       const char *peer);
/* The handshake is over (transmission starts): stops its deadline. */
void conn_handshake_done (struct conn *c);
/* Sets what the next input handler needs. */
void conn_expect (struct conn *c, size_t n, input_fn fn);
void conn_expect_sink (struct conn *c, void *dst, size_t n, input_fn fn);
void conn_expect_discard (struct conn *c, uint64_t n, input_fn fn);
/* Stops reading until conn_resume_input (the handler consumed its
 * input but waits for something, e.g. a lookup on a worker). */
void conn_pause_input (struct conn *c);
/* Resumes reading after an INPUT_PAUSE (or conn_pause_input). */
void conn_resume_input (struct conn *c);
/* Appends handshake bytes to the output (-1: too much is waiting). */
int conn_send (struct conn *c, const void *data, size_t len);
/* The same without the limit, for a reply the server builds in one go
 * (LIST of every export; option_header reads no further option until
 * the output is below half the limit). */
int conn_send_unbounded (struct conn *c, const void *data, size_t len);
/* Queues a request's reply (req->iov) and starts writing. */
void conn_queue_reply (struct conn *c, struct req *r);
/* Worker thread, after command_run (or zerocopy_prepare): writes r's
 * reply, or leaves it to the worker writing, or to the loop; r goes
 * back to the loop (workers_done) with r->sent set. */
void conn_send_from_worker (struct req *r);
/* Loop thread: r came back from a worker with r->sent set. */
void conn_reply_returned (struct conn *c, struct req *r);
/* Writes what can be written now. */
void conn_kick_output (struct conn *c);
/* Stops reading; closes once in-flight replies are out (DISC, ABORT,
 * shutdown). */
void conn_drain (struct conn *c);
/* Closes at once (broken stream, EOF); the object is freed when no
 * request of it is left with the workers. */
void conn_close (struct conn *c, const char *why);
/* Replaces the transport. */
void conn_set_transport (struct conn *c, const struct transport *tr,
                         void *tr_data);
/* STARTTLS was acknowledged: stops reading; once the ACK is written,
 * installs tr (refusing plaintext the client sent after STARTTLS), runs
 * its handshake on the loop (TLS_HANDSHAKE_TIMEOUT at most), then calls
 * handshake_tls_done and reads on. */
#define TLS_HANDSHAKE_TIMEOUT 30.
void conn_starttls (struct conn *c, const struct transport *tr,
                    void *tr_data);
/* Drains every connection (graceful shutdown); closes every one (when
 * draining took too long). */
void conns_drain_all (void);
void conns_close_all (void);
/* Drains the connections whose export was removed (hard mode). */
void conns_drain_removed (void);
/* Frees closed connections now (at exit, when the loop no longer runs). */
void conns_reap (void);
unsigned conns_count (void);
/* The list of connections not yet closed and freed (c->next). */
struct conn *conns_first (void);
/* Called by conn.c when a freed connection was the last one. */
void server_conns_gone (void);
/* How long a worker waits for a full socket before it leaves the rest
 * of its reply to the loop (a client that does not read ties up no
 * worker for longer). */
#define SEND_WAIT_MS 1000
/* Waits up to SEND_WAIT_MS for fd to take more: 1 when it can (or has
 * failed: the next write says so), 0 when it stayed full. */
int conn_wait_writable (int fd);
/* Moves r's reply (r->iov[r->iov_pos..]) past up to len written bytes;
 * returns what is left of len. */
size_t req_consume (struct req *r, size_t len);

/* ---- zerocopy.c (worker threads) ---------------------------------------- */

/* Reads shorter than this are read into memory. */
#define ZEROCOPY_MIN (64u << 10)
/* A READ on a plain transport whose range starts with data of the
 * export's own image stored in its host file: builds the reply header
 * and marks r->zc (the data is sent from the file by zerocopy_send);
 * false when the request is to be run as usual. */
bool zerocopy_prepare (struct req *r);
/* Writes r's reply, the data with sendfile while it lies in the host
 * file: 0 all out, EAGAIN the socket stayed full (what is left is read
 * into r->buf, where r->iov points), else the errno that broke the
 * socket or the read (the connection must close). */
int zerocopy_send (struct conn *c, struct req *r);

/* ---- reqpool.c: requests and their reused buffers ----------------------- */

/* Reply chunks of one READ at most (holes and data runs); more extents
 * than this are merged into the last data chunk. */
#define REQ_MAX_CHUNKS  32
#define REQ_MAX_IOV     (2 * REQ_MAX_CHUNKS + 4)
#define REQ_HDR_BYTES   (REQ_MAX_CHUNKS * 32 + 64)
/* Block status descriptors per context in one reply. */
#define BS_MAX_DESCRIPTORS 2048

/* What a worker did with a reply (conn_send_from_worker). */
enum req_sent {
  SENT_NO,                      /* nothing: the loop queues it */
  SENT_ALL,                     /* all of it */
  SENT_PART,                    /* part: the rest is first in the output
                                   queue, which the loop writes */
  SENT_ERROR,                   /* the socket failed: send_errno */
};

struct req {
  struct req *next;             /* free list, worker queue, output queue */
  struct req *done_next;        /* the workers' done list */
  struct conn *conn;
  const struct export *exp;
  uint16_t flags, type;
  uint64_t handle, offset;
  uint32_t count;
  bool ctx_base, ctx_depth;     /* block status: contexts to answer */
  bool structured;              /* replies in chunks */
  int error;                    /* NBD error of the reply, 0: success */
  uint64_t start_ns;            /* metrics: when the header was read */
  uint32_t inflight_bytes;      /* metrics: payload counted in flight */

  char *buf;                    /* payload buffer, cap bytes */
  size_t cap;

  /* The reply: iov[iov_pos..niov) is still to be written. */
  struct iovec iov[REQ_MAX_IOV];
  int niov, iov_pos;
  unsigned char hdr[REQ_HDR_BYTES];
  size_t hdr_used;
  void *last_chunk;             /* header of the last chunk, in hdr */

  /* Sends from workers (conn.c). */
  bool zc;                      /* the data is to come from the host file
                                   (zerocopy.c), not from buf */
  enum req_sent sent;
  int send_errno;
  bool handed;                  /* SENT_PART, not yet seen by the loop:
                                   written out, it is not put back */
  bool written_out;             /* that happened (send_lock) */
};

/* A request with a buffer of at least size bytes, or NULL when the
 * connection has reached its limits (the caller pauses input). */
struct req *req_get (struct conn *c, size_t size);
/* Gives a request back to its connection's pool. */
void req_put (struct req *r);
/* Frees the pool of a connection being freed. */
void reqpool_free (struct conn *c);
/* Bytes charged to --max-inflight now (for tests and metrics). */
uint64_t reqpool_charged (void);
/* Bytes of request buffers held by all connections, now and at most
 * so far, and buffers allocated so far (metrics, tests). */
uint64_t reqpool_held (void);
uint64_t reqpool_held_peak (void);
uint64_t reqpool_allocations (void);
/* req_put's news for the connection (conn.c): a request came back. */
void conn_req_returned (struct conn *c);

/* ---- handshake.c and meta-context.c ------------------------------------- */

/* Sends the greeting and reads the client's flags. */
void handshake_start (struct conn *c);
/* The TLS handshake after STARTTLS succeeded: negotiation starts over
 * (what was agreed in plaintext is forgotten, as the protocol says). */
void handshake_tls_done (struct conn *c);
/* Appends an option reply (header + payload). */
int handshake_reply (struct conn *c, uint32_t reply, const void *payload,
                     size_t len);
/* The meta context options on c->optbuf; exists: whether the export
 * they name exists (looked up on a worker). */
int meta_context_option (struct conn *c, bool set, bool exists);
/* The export name of a meta context option, or false if malformed. */
bool meta_context_name (const struct conn *c, const char **name,
                        uint32_t *len);
/* Context ids we hand out. */
#define META_ID_BASE_ALLOCATION  1
#define META_ID_ALLOCATION_DEPTH 2

/* ---- transmission.c ---------------------------------------------------- */

/* Enters the transmission phase on export exp (the connection now
 * holds it), asked for by name (namelen bytes). */
void transmission_start (struct conn *c, struct export *exp,
                         const char *name, uint32_t namelen);
/* A worker finished r (runs on the loop thread). */
void transmission_complete (struct req *r);
/* Engine errno -> NBD error: nbd_errno in nbd-errno.h. */

/* ---- commands.c and reply.c (worker threads) --------------------------- */

/* Runs the engine call of a validated request and builds its reply. */
void command_run (struct req *r);
/* Runs a READ or WRITE of at most INLINE_MAX bytes, or a FLUSH, on the
 * calling thread (the loop) if the engine can do it without waiting, and
 * builds its reply; false when it has to go to a worker (which redoes
 * it: a write may have been partly done, with the same bytes). */
#define INLINE_MAX (128u << 10)
bool command_try_inline (struct req *r);
void reply_reset (struct req *r);
void reply_simple (struct req *r);
void reply_read_simple (struct req *r);
void reply_error_chunk (struct req *r);
void reply_none_chunk (struct req *r);
/* Read replies: chunks appended in order; the last gets DONE. */
void reply_chunk_data (struct req *r, uint64_t offset, char *data,
                       uint32_t len);
void reply_chunk_hole (struct req *r, uint64_t offset, uint32_t len);
void reply_chunk_block_status (struct req *r, uint32_t id,
                               const void *descs, uint32_t len);
void reply_set_done (struct req *r);

/* ---- workers.c --------------------------------------------------------- */

int workers_start (struct ev_loop *loop, unsigned n);
/* Hands r to a worker; a connection's only request while no other is
 * out is kept for the loop's own thread to run once its pass is over
 * ("Leader and followers" in workers.c). */
void workers_submit (struct req *r);
/* Runs the loop until workers_break (main thread), passing it between
 * threads as workers.c says. */
void workers_lead (void);
/* Ends workers_lead (ev_break alone ends only the pass under way). */
void workers_break (void);
/* A worker hands a request back to the loop (transmission_complete). */
void workers_done (struct req *r);
/* Requests waiting for a worker (a relaxed read, for the metrics). */
unsigned workers_queue_depth (void);
/* Requests handed to the workers and not yet back (loop thread). */
unsigned long workers_out (void);
void workers_submit_job (struct job *j);
/* Waits for the workers to finish the queue and stops them. */
void workers_stop (void);

/* ---- control.c and control-cmds.c: the --control socket ---------------- */

/* Longest request line (a longer one gets an error reply and is
 * skipped up to its newline). */
#define CTL_MAX_LINE (64u << 10)
/* Binds --control=PATH (mode 0600); -1 after saying why. */
int control_open (const char *path);
/* Starts accepting on the loop. */
void control_start (struct ev_loop *loop);
/* Closes every control connection and the socket, removing its file. */
void control_stop (void);

/* A command's outcome: ret (a json_object) or a one-line error. */
struct ctl_result {
  void *ret;                    /* json_object *, owned */
  char *error;                  /* malloc'd, NULL on success */
  bool cut;                     /* hard removal: drop its clients */
  bool status;                  /* query-status: the loop adds numbers */
  bool stats;                   /* query-stats: the loop adds the figures */
  char *stats_name;             /* query-stats of one export, or NULL */
};
/* Whether name is a command. */
bool control_known (const char *name);
/* Runs command name with args (a json_object or NULL) on a worker. */
void control_run (const char *name, void *args, struct ctl_result *res);

/* ---- listen.c ----------------------------------------------------------- */

/* Opens the listening sockets the configuration names (or inherits them
 * by socket activation); -1 after saying why. */
int listen_open (void);
/* Starts accepting on the loop. */
void listen_start (struct ev_loop *loop);
/* Stops accepting (loop may be NULL before listen_start) and closes the
 * sockets, removing the Unix socket and private directory we made. */
void listen_stop (struct ev_loop *loop);
/* True when started by socket activation. */
bool listen_activated (void);
/* Where clients reach the server, read back from the listening sockets
 * (the real port with -p 0 or socket activation): the TCP port and the
 * host to name in a URI ("localhost" for every address), or the Unix
 * socket; NULL when not listening that way. */
const char *listen_port (void);
const char *listen_host (void);
const char *listen_unix (void);

/* ---- notify.c: sd_notify for Type=notify units ------------------------- */

/* READY=1 with a STATUS= line (once every listener is up); later STATUS=
 * lines when the numbers change (at most once a second); STOPPING=1.
 * Nothing without NOTIFY_SOCKET. */
void notify_ready (struct ev_loop *loop);
void notify_changed (void);
void notify_stopping (void);

/* ---- captive.c ---------------------------------------------------------- */

/* Runs --run's command with $uri & co. set; its exit ends the server. */
int captive_start (struct ev_loop *loop);
/* The URI clients connect to (for --run and -v). */
char *captive_uri (void);

/* ---- daemon.c ----------------------------------------------------------- */

/* --fork: forks; the parent exits once the child is ready. */
int daemon_fork (void);
/* Tells the waiting parent the child is ready. */
void daemon_ready (void);
int pidfile_write (const char *path);

#endif /* COWBD_SERVER_INTERNAL_H */
