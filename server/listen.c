/* SPDX-License-Identifier: BSD-3-Clause */
/* Listening sockets and accepting connections.
 *
 * Where the sockets come from, first match wins:
 *   LISTEN_PID == our pid, LISTEN_FDS = n: systemd socket activation,
 *     descriptors 3 .. 3+n-1 (libnbd's nbd_connect_systemd_socket_activation
 *     does the same)
 *   -U PATH: a Unix socket; -U -: one in a private directory made here
 *   else TCP on -i ADDR (default: every address) and -p PORT (10809),
 *     IPv4 and IPv6
 * Every listening socket is non-blocking; accept runs on the loop and
 * each accepted socket becomes a struct conn.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

#define MAX_LISTENERS 16
#define ACCEPTS_PER_EVENT 64

struct listener {
  int fd;
  ev_io w;
};

static struct listener listeners[MAX_LISTENERS];
static size_t nlisteners;
static bool activated;
static char *private_dir;       /* -U -: removed at exit */
static char *unix_path;         /* the socket we bound: unlinked at exit */

bool
listen_activated (void)
{
  return activated;
}

static int
add_listener (int fd)
{
  int fl = fcntl (fd, F_GETFL);

  if (nlisteners == MAX_LISTENERS) {
    log_error ("too many listening sockets");
    close (fd);
    return -1;
  }
  if (fl == -1 || fcntl (fd, F_SETFL, fl | O_NONBLOCK) == -1 ||
      fcntl (fd, F_SETFD, FD_CLOEXEC) == -1) {
    log_error ("listening socket %d: %m", fd);
    close (fd);
    return -1;
  }
  listeners[nlisteners++].fd = fd;
  return 0;
}

/* Socket activation: 1 if used, 0 if not asked for, -1 on error. */
static int
open_activated (void)
{
  const char *pid = getenv ("LISTEN_PID"), *fds = getenv ("LISTEN_FDS");
  char *end;
  long n, i;

  if (pid == NULL || fds == NULL || atol (pid) != (long) getpid ())
    return 0;
  errno = 0;
  n = strtol (fds, &end, 10);
  if (errno || *end || n < 1 || n > MAX_LISTENERS) {
    log_error ("LISTEN_FDS=%s: expected 1 to %d descriptors", fds,
               MAX_LISTENERS);
    return -1;
  }
  unsetenv ("LISTEN_PID");
  unsetenv ("LISTEN_FDS");
  unsetenv ("LISTEN_FDNAMES");
  for (i = 0; i < n; i++)
    if (add_listener (3 + (int) i) == -1)
      return -1;
  activated = true;
  return 1;
}

static int
make_private_path (void)
{
  char tmpl[] = "/tmp/cowbdXXXXXX";

  if (mkdtemp (tmpl) == NULL) {
    log_error ("making a private socket directory: %m");
    return -1;
  }
  private_dir = strdup (tmpl);
  if (private_dir == NULL ||
      asprintf (&unix_path, "%s/socket", private_dir) == -1) {
    log_error ("out of memory");
    return -1;
  }
  return 0;
}

static int
open_unix (const char *path)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  int fd;

  if (strcmp (path, "-") == 0) {
    if (make_private_path () == -1)
      return -1;
  }
  else if ((unix_path = strdup (path)) == NULL) {
    log_error ("out of memory");
    return -1;
  }
  if (strlen (unix_path) >= sizeof sa.sun_path) {
    log_error ("%s: socket path too long", unix_path);
    return -1;
  }
  strcpy (sa.sun_path, unix_path);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1 || bind (fd, (struct sockaddr *) &sa, sizeof sa) == -1 ||
      listen (fd, SOMAXCONN) == -1) {
    log_error ("%s: %m", unix_path);
    if (fd >= 0)
      close (fd);
    free (unix_path);
    unix_path = NULL;
    return -1;
  }
  cfg.unix_path = unix_path;
  return add_listener (fd);
}

static int
open_one_tcp (const struct addrinfo *a)
{
  int fd, one = 1;

  fd = socket (a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
  if (fd == -1)
    return -1;
  setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (a->ai_family == AF_INET6)
    setsockopt (fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind (fd, a->ai_addr, a->ai_addrlen) == -1 ||
      listen (fd, SOMAXCONN) == -1) {
    int e = errno;
    close (fd);
    errno = e;
    return -1;
  }
  return add_listener (fd) == -1 ? -2 : 0;
}

static int
open_tcp (void)
{
  struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_ADDRCONFIG,
                            .ai_socktype = SOCK_STREAM };
  struct addrinfo *res, *a;
  const char *port = cfg.port ? cfg.port : "10809";
  int r, err = 0;

  r = getaddrinfo (cfg.ipaddr, port, &hints, &res);
  if (r) {
    log_error ("%s:%s: %s", cfg.ipaddr ? cfg.ipaddr : "*", port,
               gai_strerror (r));
    return -1;
  }
  for (a = res; a; a = a->ai_next) {
    r = open_one_tcp (a);
    if (r == -2)
      break;
    if (r == -1)
      err = errno;
  }
  freeaddrinfo (res);
  if (r == -2)
    return -1;
  if (nlisteners == 0) {
    log_error ("listening on %s port %s: %s",
               cfg.ipaddr ? cfg.ipaddr : "*", port, strerror (err));
    return -1;
  }
  return 0;
}

int
listen_open (void)
{
  int r = open_activated ();

  if (r > 0 && cfg.single) {
    /* nbdcopy -- [ cowbd -s IMG ] starts its server this way: the
     * activated socket wins over stdin/stdout. */
    log_verbose ("socket activation: -s ignored");
    cfg.single = false;
  }
  if (r)
    return r < 0 ? -1 : 0;
  if (cfg.single)
    return 0;
  if (cfg.unix_path)
    return open_unix (cfg.unix_path);
  return open_tcp ();
}

/* "127.0.0.1:40000", "[::1]:40000" or "unix socket". */
static void
peer_name (const struct sockaddr_storage *ss, char *buf, size_t len)
{
  char host[NI_MAXHOST], serv[NI_MAXSERV];

  if (ss->ss_family == AF_UNIX ||
      getnameinfo ((const struct sockaddr *) ss, sizeof *ss, host,
                   sizeof host, serv, sizeof serv,
                   NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    snprintf (buf, len, "unix socket");
    return;
  }
  snprintf (buf, len, ss->ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s",
            host, serv);
}

static void
accept_cb (struct ev_loop *loop, ev_io *w, int revents)
{
  struct listener *l = w->data;
  int i;

  for (i = 0; i < ACCEPTS_PER_EVENT; i++) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char peer[80];
    int fd, one = 1;

    fd = accept4 (l->fd, (struct sockaddr *) &ss, &len,
                  SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd == -1) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
          errno != ECONNABORTED)
        log_error ("accept: %m");
      return;
    }
    if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)
      setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    peer_name (&ss, peer, sizeof peer);
    conn_new (loop, fd, fd, peer);
  }
}

void
listen_start (struct ev_loop *loop)
{
  size_t i;

  for (i = 0; i < nlisteners; i++) {
    ev_io_init (&listeners[i].w, accept_cb, listeners[i].fd, EV_READ);
    listeners[i].w.data = &listeners[i];
    ev_io_start (loop, &listeners[i].w);
  }
}

void
listen_stop (struct ev_loop *loop)
{
  size_t i;

  for (i = 0; i < nlisteners; i++) {
    if (loop)
      ev_io_stop (loop, &listeners[i].w);
    close (listeners[i].fd);
  }
  nlisteners = 0;
  if (unix_path) {
    unlink (unix_path);
    free (unix_path);
    unix_path = NULL;
    cfg.unix_path = NULL;
  }
  if (private_dir) {
    rmdir (private_dir);
    free (private_dir);
    private_dir = NULL;
  }
}
