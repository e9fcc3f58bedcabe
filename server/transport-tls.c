/* SPDX-License-Identifier: BSD-3-Clause */
/* The TLS transport: a GnuTLS server session over the connection's
 * non-blocking socket, installed after STARTTLS (conn_starttls).
 *
 * Everything runs on the loop thread and nothing blocks: GnuTLS reads and
 * writes the descriptors itself and answers GNUTLS_E_AGAIN where the
 * socket has no data or no room, which becomes errno EAGAIN for conn.c.
 *
 *   handshake  gnutls_handshake until done; while it is not, the
 *              direction it waits for (gnutls_record_get_direction) tells
 *              conn.c which watcher to arm
 *   recv       gnutls_record_recv; records decrypted but not yet taken
 *              are `pending`, which conn.c asks about since the socket
 *              will not signal them
 *   writev     one record a call (at most 16 KiB): a long buffer goes
 *              out as it is, small ones (replies' headers) are gathered
 *              into one record first.  A send cut short by EAGAIN holds
 *              the encrypted record; the next call finishes it
 *              (gnutls_record_send with no data) and reports its bytes
 *              as written - conn.c offers the same bytes again first
 *   shutdown   close_notify (gnutls_bye), best effort
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"
#include "minmax.h"
#include "tls.h"

/* The largest plaintext of one TLS record. */
#define RECORD_MAX 16384

struct tls {
  gnutls_session_t s;
  int wfd;
  const struct conn *conn;
  size_t send_pending;          /* bytes of a record send cut short */
  bool bye_sent;
  uint8_t gather[RECORD_MAX];
};

/* Encrypting is the server's slow part: with room for a whole reply in
 * the socket, the loop encrypts the next records while the client
 * decrypts the last ones, instead of taking turns (1 MiB reads over a
 * Unix socket: 210 -> 350 MiB/s).  TCP sockets are left to the kernel's
 * autotuning, which setting SO_SNDBUF would switch off. */
#define UNIX_SNDBUF (4 << 20)  /* the kernel caps it at wmem_max */

static void
widen_send_buffer (int fd)
{
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int size = UNIX_SNDBUF;

  if (getsockname (fd, (struct sockaddr *) &ss, &len) == 0 &&
      ss.ss_family == AF_UNIX)
    setsockopt (fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
}

void *
transport_tls_new (int rfd, int wfd, const struct conn *conn)
{
  struct tls *t = calloc (1, sizeof *t);
  int r;

  if (t == NULL) {
    log_conn (conn, LOG_ERR, "TLS: out of memory");
    return NULL;
  }
  t->wfd = wfd;
  t->conn = conn;
  r = gnutls_init (&t->s, GNUTLS_SERVER | GNUTLS_NONBLOCK);
  if (r == 0)
    r = tls_session_setup (t->s);
  if (r < 0) {
    log_conn (conn, LOG_ERR, "TLS session: %s",
               gnutls_strerror (r));
    if (t->s)
      gnutls_deinit (t->s);
    free (t);
    return NULL;
  }
  gnutls_transport_set_int2 (t->s, rfd, wfd);
  widen_send_buffer (wfd);
  return t;
}

/* GnuTLS's would-block codes as errno EAGAIN; anything else fatal as
 * EIO (logged). */
static ssize_t
tls_error (struct tls *t, int r, const char *what)
{
  if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
    errno = EAGAIN;
    return -1;
  }
  log_conn (t->conn, LOG_INFO, "TLS %s: %s", what,
               gnutls_strerror (r));
  errno = EIO;
  return -1;
}

static int
tls_handshake (void *data, bool *want_write)
{
  struct tls *t = data;
  int r = gnutls_handshake (t->s);

  if (r == 0) {
    char *desc = gnutls_session_get_desc (t->s);
    log_conn (t->conn, LOG_INFO, "TLS: %s",
                 desc ? desc : "handshake done");
    gnutls_free (desc);
    if (gnutls_auth_get_type (t->s) == GNUTLS_CRD_PSK)
      log_conn (t->conn, LOG_INFO, "TLS: PSK identity %s",
                   gnutls_psk_server_get_username (t->s) ?: "?");
    return 0;
  }
  if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED ||
      !gnutls_error_is_fatal (r)) {
    *want_write = gnutls_record_get_direction (t->s) == 1;
    return 1;
  }
  log_conn (t->conn, LOG_NOTICE, "TLS handshake failed: %s",
               gnutls_strerror (r));
  return -1;
}

static ssize_t
tls_recv (void *data, void *buf, size_t len)
{
  struct tls *t = data;
  ssize_t r = gnutls_record_recv (t->s, buf, len);

  if (r >= 0)
    return r;
  /* A client that closes without close_notify: the end of the stream,
   * which conn.c judges (clean between requests, or cut short). */
  if (r == GNUTLS_E_PREMATURE_TERMINATION)
    return 0;
  return tls_error (t, (int) r, "read");
}

static bool
tls_pending (void *data)
{
  struct tls *t = data;

  return gnutls_record_check_pending (t->s) > 0;
}

static ssize_t
tls_writev (void *data, const struct iovec *iov, int iovcnt)
{
  struct tls *t = data;
  const void *p;
  size_t n;
  ssize_t r;
  int i;

  if (t->send_pending) {
    r = gnutls_record_send (t->s, NULL, 0);
    if (r < 0)
      return tls_error (t, (int) r, "write");
    t->send_pending = 0;
    return r;
  }
  if (iovcnt == 0) {
    errno = EINVAL;
    return -1;
  }
  if (iov[0].iov_len >= RECORD_MAX || iovcnt == 1) {
    p = iov[0].iov_base;
    n = MIN (iov[0].iov_len, (size_t) RECORD_MAX);
  }
  else {                        /* small pieces: one record */
    for (n = 0, i = 0; i < iovcnt && n < RECORD_MAX; i++) {
      size_t m = MIN (iov[i].iov_len, RECORD_MAX - n);
      memcpy (t->gather + n, iov[i].iov_base, m);
      n += m;
    }
    p = t->gather;
  }
  r = gnutls_record_send (t->s, p, n);
  if (r == GNUTLS_E_AGAIN)
    t->send_pending = n;        /* encrypted and held: resumed above */
  if (r < 0)
    return tls_error (t, (int) r, "write");
  return r;
}

static void
tls_shutdown (void *data)
{
  struct tls *t = data;

  if (!t->bye_sent) {
    t->bye_sent = true;
    gnutls_bye (t->s, GNUTLS_SHUT_WR);  /* one try: never waits */
  }
  shutdown (t->wfd, SHUT_WR);
}

static void
tls_free_transport (void *data)
{
  struct tls *t = data;

  gnutls_deinit (t->s);
  free (t);
}

const struct transport transport_tls = {
  .name = "tls",
  .recv = tls_recv,
  .writev = tls_writev,
  .pending = tls_pending,
  .handshake = tls_handshake,
  .shutdown = tls_shutdown,
  .free = tls_free_transport,
};
