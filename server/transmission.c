/* SPDX-License-Identifier: BSD-3-Clause */
/* The transmission phase on the loop thread: requests are read, checked
 * and handed to the workers; their replies come back here.
 *
 *   request header (28) --valid--> [WRITE: payload sunk into the
 *         ^                         request's buffer] --> workers_submit
 *         |            --invalid-> [WRITE: payload discarded]
 *         |                         --> error reply, queued at once
 *         +-- next request
 *
 * validate() is the one place a request is judged (command, flags,
 * negotiated features, read-only, sizes, range); the engine never sees a
 * request that fails it.  nbd_errno() (nbd-errno.h) is the one place
 * engine errno values become NBD errors.  A bad magic is a broken
 * stream: that connection is closed, nobody else notices.
 */
#include <config.h>

#include <endian.h>
#include <inttypes.h>
#include <string.h>
#include <sys/socket.h>

#include "checked-overflow.h"
#include "internal.h"
#include "nbd-protocol.h"

static int request_header (struct conn *c, const char *data);

/* A socket buffer that holds several large replies: a worker sending
 * into a full one sleeps and is woken once per buffer's worth (each a
 * context switch, which is what this kind of machine pays most for).
 * Best effort: the kernel caps it at net.core.wmem_max. */
#define SEND_BUFFER (4 << 20)

static void
grow_send_buffer (struct conn *c)
{
  int n = SEND_BUFFER;

  (void) setsockopt (c->wfd, SOL_SOCKET, SO_SNDBUF, &n, sizeof n);
}

void
transmission_start (struct conn *c, struct export *exp, const char *name,
                    uint32_t namelen)
{
  conn_handshake_done (c);
  c->exp = exp;
  metrics_handshake (HS_OK);
  metrics_export_conn (exp, 1);
  c->eflags = export_eflags (exp, c->structured);
  /* Workers write replies themselves on a plain socket; a TLS session
   * is not thread-safe, its records go out from the loop. */
  c->direct = c->tr == &transport_plain;
  if (c->direct)
    grow_send_buffer (c);
  if (c->meta_name && c->meta_namelen == namelen &&
      memcmp (c->meta_name, name, namelen) == 0) {
    c->ctx_base = c->meta_base;
    c->ctx_depth = c->meta_depth;
  }
  log_conn (c, LOG_INFO, "serving export '%s'%s", exp->name,
               c->structured ? " with structured replies" : "");
  conn_expect (c, sizeof (struct nbd_request), request_header);
}

static bool
writes (uint16_t type)
{
  return type == NBD_CMD_WRITE || type == NBD_CMD_TRIM ||
    type == NBD_CMD_WRITE_ZEROES;
}

/* The flags each command accepts (FUA: any, when negotiated). */
static uint16_t
allowed_flags (const struct conn *c, uint16_t type)
{
  uint16_t f = (c->eflags & NBD_FLAG_SEND_FUA) ? NBD_CMD_FLAG_FUA : 0;

  switch (type) {
  case NBD_CMD_READ:
    return f | ((c->eflags & NBD_FLAG_SEND_DF) ? NBD_CMD_FLAG_DF : 0);
  case NBD_CMD_WRITE_ZEROES:
    return f | NBD_CMD_FLAG_NO_HOLE |
      ((c->eflags & NBD_FLAG_SEND_FAST_ZERO) ? NBD_CMD_FLAG_FAST_ZERO : 0);
  case NBD_CMD_BLOCK_STATUS:
    return f | NBD_CMD_FLAG_REQ_ONE;
  default:
    return f;
  }
}

/* Returns the NBD error the request deserves, 0 if it may run. */
static uint32_t
validate (const struct conn *c, const struct nbd_request *q)
{
  uint64_t size = c->exp->size, offset = q->offset;

  switch (q->type) {
  case NBD_CMD_READ: case NBD_CMD_WRITE: case NBD_CMD_FLUSH:
  case NBD_CMD_TRIM: case NBD_CMD_CACHE: case NBD_CMD_WRITE_ZEROES:
  case NBD_CMD_BLOCK_STATUS:
    break;
  default:
    return NBD_EINVAL;
  }
  if (q->flags & ~allowed_flags (c, q->type))
    return NBD_EINVAL;
  if (writes (q->type) && c->exp->readonly)
    return NBD_EPERM;
  if (q->type == NBD_CMD_FLUSH)
    return q->offset || q->count ? NBD_EINVAL : 0;
  if (q->type == NBD_CMD_BLOCK_STATUS && !c->ctx_base && !c->ctx_depth)
    return NBD_EINVAL;
  if ((q->type == NBD_CMD_READ || q->type == NBD_CMD_WRITE) &&
      q->count > MAX_PAYLOAD)
    return NBD_EINVAL;
  if (q->count == 0)
    return NBD_EINVAL;
  if (RANGE_OUTSIDE (offset, (uint64_t) q->count, size))
    return q->type == NBD_CMD_WRITE || q->type == NBD_CMD_WRITE_ZEROES ?
      NBD_ENOSPC : NBD_EINVAL;
  return 0;
}

/* Bytes of buffer a valid request needs. */
static size_t
buffer_need (const struct nbd_request *q)
{
  switch (q->type) {
  case NBD_CMD_READ: case NBD_CMD_WRITE:
    return q->count;
  case NBD_CMD_BLOCK_STATUS:
    return 2 * BS_MAX_DESCRIPTORS * sizeof (struct nbd_block_descriptor);
  default:
    return 0;
  }
}

/* Answers a request that failed validation, from the loop thread. */
static void
reply_invalid (struct conn *c, struct req *r)
{
  metrics_request_done (r);
  if (r->structured && (r->type == NBD_CMD_READ ||
                        r->type == NBD_CMD_BLOCK_STATUS))
    reply_error_chunk (r);
  else
    reply_simple (r);
  conn_queue_reply (c, r);
}

/* A valid request: answered on the spot when that cannot block (a small
 * read or overwrite of cached data), else handed to the workers.  On a
 * machine with few cores, two thread handoffs cost more than the 4 KiB
 * copy the request itself needs. */
static void
dispatch (struct conn *c, struct req *r)
{
  if (command_try_inline (r)) {
    metrics_request_done (r);
    conn_queue_reply (c, r);
  }
  else
    workers_submit (r);
}

static int
write_payload_done (struct conn *c, const char *data)
{
  struct req *r = c->cur_req;

  c->cur_req = NULL;
  if (r->error)
    reply_invalid (c, r);
  else
    dispatch (c, r);
  conn_expect (c, sizeof (struct nbd_request), request_header);
  return INPUT_OK;
}

static void
log_refused (const struct conn *c, const struct nbd_request *q,
             uint32_t err)
{
  const char *name = name_command (q->type);

  log_conn (c, LOG_INFO, "%s%.0u flags 0x%x offset %" PRIu64 " length %"
            PRIu32 " refused with %s", name ? name : "command type ",
            name ? 0u : q->type, q->flags, q->offset, q->count,
            name_error (err) ?: "an error");
}

static int
request_header (struct conn *c, const char *data)
{
  struct nbd_request q;
  struct req *r;
  uint32_t err;

  memcpy (&q, data, sizeof q);
  if (be32toh (q.magic) != NBD_REQUEST_MAGIC) {
    log_conn (c, LOG_INFO, "bad request magic");
    return INPUT_CLOSE;
  }
  q.flags = be16toh (q.flags);
  q.type = be16toh (q.type);
  q.offset = be64toh (q.offset);
  q.count = be32toh (q.count);
  if (q.type == NBD_CMD_DISC) {
    log_conn (c, LOG_INFO, "client sent disconnect");
    conn_drain (c);
    return INPUT_OK;
  }
  /* Removed in hard mode (control.c) after this connection was swept:
   * what is in flight finishes, nothing new starts. */
  if (c->exp->ref && registry_export_removed (c->exp->ref)) {
    log_conn (c, LOG_INFO, "export '%s' was removed", c->exp->name);
    conn_drain (c);
    return INPUT_OK;
  }

  /* A refused write's payload is read and dropped, but not without end:
   * past twice the largest request the server takes, it closes instead,
   * as nbdkit does. */
  if (q.type == NBD_CMD_WRITE && q.count > 2 * (uint64_t) MAX_PAYLOAD) {
    log_conn (c, LOG_INFO, "write of %" PRIu32 " bytes is too large "
                 "to read and drop; closing", q.count);
    return INPUT_CLOSE;
  }
  err = validate (c, &q);
  r = req_get (c, err ? 0 : buffer_need (&q));
  if (r == NULL)
    return INPUT_PAUSE;         /* backpressure: retried later */
  c->requests++;
  r->type = q.type;
  r->flags = q.flags;
  r->handle = q.handle;         /* opaque: kept in wire order */
  r->offset = q.offset;
  r->count = q.count;
  r->structured = c->structured;
  r->ctx_base = c->ctx_base;
  r->ctx_depth = c->ctx_depth;
  r->error = (int) err;
  metrics_request_start (r);
  if (err)
    log_refused (c, &q, err);
  else
    log_conn (c, LOG_DEBUG, "%s flags 0x%x offset %" PRIu64 " length %"
              PRIu32, name_command (q.type), q.flags, q.offset, q.count);

  if (q.type == NBD_CMD_WRITE) {
    c->cur_req = r;
    if (err)                    /* the payload is read and dropped */
      conn_expect_discard (c, q.count, write_payload_done);
    else
      conn_expect_sink (c, r->buf, q.count, write_payload_done);
    return INPUT_OK;
  }
  if (err)
    reply_invalid (c, r);
  else
    dispatch (c, r);
  return INPUT_OK;
}

void
transmission_complete (struct req *r)
{
  struct conn *c = r->conn;

  metrics_request_done (r);
  conn_reply_returned (c, r);
}
