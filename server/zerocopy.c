/* SPDX-License-Identifier: BSD-3-Clause */
/* READ replies whose data never passes through user space.
 *
 * On a plain transport, a worker with a large READ whose range starts
 * with data the export's own image keeps in its host file (raw, or
 * allocated uncompressed clusters of QED and qcow2: image_map_host)
 * takes the connection's writer role, writes the reply header and
 * sends the data with sendfile from the host file, run by run:
 *
 *   [reply header] [sendfile run 1] [sendfile run 2] ... [pread rest]
 *
 * The reply is the one the usual path would build with the data in
 * r->buf (one OFFSET_DATA chunk when structured), so the part that is
 * not in a host run (a backing image's data, zero or compressed
 * clusters further on), or that the socket did not take within
 * SEND_WAIT_MS, is read into r->buf at its place and sent from there,
 * by the worker or, for the rest, by the loop.  Once the header is out
 * the reply cannot turn into an error: a read that fails then closes
 * the connection.
 *
 * The lookup is atomic, the read of the host file is not, as in the
 * engine's own pread: a write, trim or zero of the same clusters at the
 * same time gives their old or new content (see image_map_host).
 * AF_UNIX and TCP sockets both take pages from sendfile (Linux >= 6.5
 * splices them into the socket for AF_UNIX), so the server copies
 * nothing.  TLS connections never come here (c->direct).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "minmax.h"
#include "nbd-protocol.h"

/* One run of the host file: what is left of it. */
struct run {
  int fd;
  uint64_t host, len;
};

/* The position in the payload of r's next unsent byte, or -1 if the
 * next iovec is not the payload (the header). */
static int64_t
payload_pos (const struct req *r)
{
  const struct iovec *v = &r->iov[r->iov_pos];
  const char *p = v->iov_base;

  if (p < r->buf || p >= r->buf + r->count)
    return -1;
  return p - r->buf;
}

/* Reads the payload from pos to its end into r->buf, where the rest of
 * the iovec points: it goes out from memory now.  0 or an errno. */
static int
read_rest (struct req *r, uint32_t pos)
{
  if (image_pread (r->exp->img, r->buf + pos, r->count - pos,
                   r->offset + pos) == -1) {
    log_conn (r->conn, LOG_ERR, "read after the reply header was sent: "
              "%s; closing", image_error ());
    return EIO;
  }
  return 0;
}

/* Writes the iovecs before the payload (the header), or all that is
 * left once the payload is in memory.  As sendmsg. */
static ssize_t
send_memory (struct conn *c, struct req *r, bool header)
{
  struct msghdr m = {
    .msg_iov = &r->iov[r->iov_pos],
    .msg_iovlen = header ? 1 : (size_t) (r->niov - r->iov_pos),
  };
  ssize_t n;

  do
    n = sendmsg (c->wfd, &m, MSG_NOSIGNAL | (header ? MSG_MORE : 0));
  while (n == -1 && errno == EINTR);
  if (n == -1 && errno == ENOTSOCK)     /* -s: a pipe */
    n = writev (c->wfd, m.msg_iov, (int) m.msg_iovlen);
  return n;
}

/* Sends from the host file at payload position pos: the run found
 * there, looked up if used up.  >0 bytes sent, 0 when the rest has to
 * come from memory (read into r->buf now), -1 with errno. */
static ssize_t
send_file (struct req *r, struct run *run, uint32_t pos)
{
  off_t off;
  ssize_t n;
  int e;

  if (run->len == 0) {
    int m = image_map_host (r->exp->img, r->count - pos, r->offset + pos,
                            &run->fd, &run->host, &run->len);
    if (m != 1)
      return (e = read_rest (r, pos)) ? (errno = e, -1) : 0;
  }
  off = (off_t) run->host;
  n = sendfile (r->conn->wfd, run->fd, &off,
                MIN (run->len, (uint64_t) (r->count - pos)));
  if (n == 0)                   /* the file is shorter than it said */
    return (e = read_rest (r, pos)) ? (errno = e, -1) : 0;
  if (n > 0) {
    run->host += (uint64_t) n;
    run->len -= (uint64_t) n;
  }
  return n;
}

int
zerocopy_send (struct conn *c, struct req *r)
{
  struct run run = { .fd = -1 };
  bool in_file = true;

  while (r->iov_pos < r->niov) {
    int64_t pos = payload_pos (r);
    ssize_t n;

    if (in_file && pos >= 0) {
      n = send_file (r, &run, (uint32_t) pos);
      if (n == 0) {
        in_file = false;
        continue;
      }
    }
    else
      n = send_memory (c, r, in_file);
    if (n > 0) {
      req_consume (r, (size_t) n);
      continue;
    }
    if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK)
      return errno;
    if (!conn_wait_writable (c->wfd)) {
      pos = payload_pos (r);
      if (in_file && read_rest (r, pos >= 0 ? (uint32_t) pos : 0))
        return EIO;
      return EAGAIN;
    }
  }
  return 0;
}

bool
zerocopy_prepare (struct req *r)
{
  struct conn *c = r->conn;
  struct run run;

  if (r->type != NBD_CMD_READ || !c->direct || r->count < ZEROCOPY_MIN ||
      image_map_host (r->exp->img, r->count, r->offset, &run.fd, &run.host,
                      &run.len) != 1)
    return false;
  if (log_enabled (LOG_DEBUG))
    log_conn (c, LOG_DEBUG, "read offset %" PRIu64 " length %" PRIu32
              ": from the host file at %" PRIu64 " (%" PRIu64 " bytes "
              "there)", r->offset, r->count, run.host,
              MIN (run.len, (uint64_t) r->count));
  if (r->structured) {          /* as the usual path, in one chunk */
    reply_chunk_data (r, r->offset, r->buf, r->count);
    reply_set_done (r);
  }
  else
    reply_read_simple (r);
  r->zc = true;
  return true;
}
