/* SPDX-License-Identifier: BSD-3-Clause */
/* The byte transport under one connection.
 *
 * Everything the connection code knows about moving bytes goes through
 * these callbacks, so that the plain socket transport (transport-plain.c)
 * and a TLS one (GnuTLS, after STARTTLS) are interchangeable.  All calls
 * run on the event loop thread and never block: the descriptors are
 * non-blocking and a call that cannot progress fails with errno EAGAIN.
 *
 *    conn.c  --recv/writev-->  struct transport  -->  socket (or TLS)
 *
 * A TLS transport is installed by replacing conn->tr and conn->tr_data
 * after the STARTTLS reply has been written (conn_set_transport).  Its
 * handshake is driven from the connection's watchers: while `handshake`
 * returns 1 the connection waits for the direction `want_write` names.
 */
#ifndef COWBD_SERVER_TRANSPORT_H
#define COWBD_SERVER_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

struct transport {
  const char *name;             /* "plain", "tls": for logs */

  /* Reads up to len bytes: >0 bytes read, 0 end of stream, -1 with errno
   * (EAGAIN: nothing to read now). */
  ssize_t (*recv) (void *data, void *buf, size_t len);

  /* Writes from iov: bytes written (possibly short), or -1 with errno
   * (EAGAIN: the socket is full).  A TLS transport may keep part of the
   * data buffered; it must then report it as written and send it on the
   * next call. */
  ssize_t (*writev) (void *data, const struct iovec *iov, int iovcnt);

  /* True when the transport holds already-received bytes that recv will
   * return without the socket becoming readable (TLS record buffers). */
  bool (*pending) (void *data);

  /* Drives a transport's own handshake: 0 done, 1 call again when the
   * socket is ready in the direction *want_write says, -1 failed.  NULL
   * for transports without one. */
  int (*handshake) (void *data, bool *want_write);

  /* Ends the session politely (TLS close_notify) and shuts the socket
   * down for writing; best effort, never blocks. */
  void (*shutdown) (void *data);

  /* Frees the transport state; does not close the descriptors, which the
   * connection owns. */
  void (*free) (void *data);
};

/* The plain socket transport (transport-plain.c): reads from rfd and
 * writes to wfd (the same socket, or stdin and stdout with -s). */
extern const struct transport transport_plain;
void *transport_plain_new (int rfd, int wfd);

#endif /* COWBD_SERVER_TRANSPORT_H */
