/* SPDX-License-Identifier: BSD-3-Clause */
/* The plain transport: bytes go straight to the socket (or, with -s, come
 * from stdin and go to stdout).  send with MSG_NOSIGNAL where the
 * descriptor is a socket, plain writev where it is a pipe or a file.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "transport.h"

struct plain {
  int rfd, wfd;
  bool wsock;                   /* wfd is a socket: sendmsg works */
};

void *
transport_plain_new (int rfd, int wfd)
{
  struct plain *p = calloc (1, sizeof *p);
  struct stat st;

  if (p == NULL)
    return NULL;
  p->rfd = rfd;
  p->wfd = wfd;
  p->wsock = fstat (wfd, &st) == 0 && S_ISSOCK (st.st_mode);
  return p;
}

static ssize_t
plain_recv (void *data, void *buf, size_t len)
{
  struct plain *p = data;
  ssize_t r;

  do
    r = read (p->rfd, buf, len);
  while (r == -1 && errno == EINTR);
  return r;
}

static ssize_t
plain_writev (void *data, const struct iovec *iov, int iovcnt)
{
  struct plain *p = data;
  ssize_t r;

  do {
    if (p->wsock) {
      struct msghdr msg = { .msg_iov = (struct iovec *) iov,
                            .msg_iovlen = (size_t) iovcnt };
      r = sendmsg (p->wfd, &msg, MSG_NOSIGNAL);
    }
    else
      r = writev (p->wfd, iov, iovcnt);
  } while (r == -1 && errno == EINTR);
  return r;
}

static bool
plain_pending (void *data)
{
  return false;
}

static void
plain_shutdown (void *data)
{
  struct plain *p = data;

  if (p->wsock)
    shutdown (p->wfd, SHUT_WR);
}

static void
plain_free (void *data)
{
  free (data);
}

const struct transport transport_plain = {
  .name = "plain",
  .recv = plain_recv,
  .writev = plain_writev,
  .pending = plain_pending,
  .handshake = NULL,
  .shutdown = plain_shutdown,
  .free = plain_free,
};
