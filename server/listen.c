/* SPDX-License-Identifier: BSD-3-Clause */
/* Listening sockets and accepting connections.
 *
 * Where the sockets come from, first match wins:
 *   LISTEN_PID == our pid, LISTEN_FDS = n: systemd socket activation,
 *     descriptors 3 .. 3+n-1 (libnbd's nbd_connect_systemd_socket_activation
 *     does the same)
 *   -U PATH: a Unix socket; -U -: one in a private directory made here.
 *     A socket file nobody accepts on (left by a killed server) is
 *     replaced, as qemu-nbd does; one a server listens on is refused.
 *   else TCP on -i ADDR (default: every address) and -p PORT (10809),
 *     IPv4 and IPv6.  Every address must bind, or the start fails: a
 *     server reachable on IPv6 but not IPv4 (the port taken there) would
 *     look started and serve half its clients.  With -p 0 the kernel
 *     picks the port of the first address and the others get the same.
 * The address clients reach (listen_port, listen_unix, listen_host) is
 * read back from the sockets, so that -p 0 and socket activation give
 * the real one.  Every listening socket is non-blocking; accept runs on
 * the loop and each accepted socket becomes a struct conn.
 *
 * Out of descriptors (EMFILE, ENFILE) or memory (ENOBUFS, ENOMEM),
 * accept fails while the connection stays queued, so the socket stays
 * readable and a level-triggered loop would call accept again at once,
 * forever: every listener is stopped for ACCEPT_BACKOFF seconds instead,
 * and the failure is logged once per ACCEPT_LOG_INTERVAL with a count.
 * Clients wait in the listen queue meanwhile and are taken as
 * descriptors come free.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

#define MAX_LISTENERS 16
#define ACCEPTS_PER_EVENT 64
#define ACCEPT_BACKOFF 0.1
#define ACCEPT_LOG_INTERVAL 10.
/* -p 0 on several addresses: tries to find a port free on all of them. */
#define PORT0_TRIES 10

struct listener {
  int fd;
  ev_io w;
};

static struct listener listeners[MAX_LISTENERS];
static size_t nlisteners;
static bool activated;
static char *private_dir;       /* -U -: removed at exit */
static char *unix_path;         /* the socket we bound: unlinked at exit */
/* Where clients reach us, read back from the first listening socket. */
static char real_port[NI_MAXSERV];      /* "" when not on TCP */
static char real_host[NI_MAXHOST];      /* "" when not on TCP */
static char activated_unix[sizeof ((struct sockaddr_un *) 0)->sun_path];

bool
listen_activated (void)
{
  return activated;
}

const char *
listen_port (void)
{
  return real_port[0] ? real_port : NULL;
}

const char *
listen_host (void)
{
  return real_host[0] ? real_host : NULL;
}

const char *
listen_unix (void)
{
  return unix_path ? unix_path : activated_unix[0] ? activated_unix : NULL;
}

/* Reads back the address of listening socket fd: the port, and the host
 * a client names (localhost for a wildcard address). */
static void
learn_address (int fd)
{
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  const struct sockaddr_un *sun = (const struct sockaddr_un *) &ss;

  memset (&ss, 0, sizeof ss);
  if (getsockname (fd, (struct sockaddr *) &ss, &len) == -1)
    return;
  if (ss.ss_family == AF_UNIX) {
    if (sun->sun_path[0]) {     /* not an abstract socket */
      memcpy (activated_unix, sun->sun_path, sizeof activated_unix - 1);
      activated_unix[sizeof activated_unix - 1] = '\0';
    }
    return;
  }
  if (getnameinfo ((struct sockaddr *) &ss, len, real_host,
                   sizeof real_host, real_port, sizeof real_port,
                   NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    real_host[0] = real_port[0] = '\0';
    return;
  }
  if (strcmp (real_host, "0.0.0.0") == 0 || strcmp (real_host, "::") == 0)
    strcpy (real_host, "localhost");
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

static bool
is_listening_socket (int fd)
{
  int v = 0;
  socklen_t len = sizeof v;

  return getsockopt (fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0 && v;
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
  for (i = 0; i < n; i++) {
    if (!is_listening_socket (3 + (int) i)) {
      /* Not inherited: the descriptor may now be one of our images. */
      log_error ("LISTEN_FDS: descriptor %d is not a listening socket",
                 3 + (int) i);
      return -1;
    }
    if (add_listener (3 + (int) i) == -1)
      return -1;
  }
  learn_address (3);
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

/* Is someone accepting on the Unix socket file at sa?  1 yes, 0 no (a
 * socket file left by a server that died). */
static int
unix_socket_live (const struct sockaddr_un *sa)
{
  int fd, r;

  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd == -1)
    return 1;                   /* cannot tell: leave it alone */
  r = connect (fd, (const struct sockaddr *) sa, sizeof *sa);
  /* A full backlog (EAGAIN) is a live server too. */
  r = r == -1 && (errno == ECONNREFUSED || errno == ENOENT) ? 0 : 1;
  close (fd);
  return r;
}

/* Binds fd to sa, replacing a stale socket file left there by a server
 * that died; -1 after saying why. */
static int
bind_unix (int fd, const struct sockaddr_un *sa)
{
  struct stat st;

  if (bind (fd, (const struct sockaddr *) sa, sizeof *sa) == 0)
    return 0;
  if (errno != EADDRINUSE) {
    log_error ("%s: %m", sa->sun_path);
    return -1;
  }
  if (lstat (sa->sun_path, &st) == 0 && !S_ISSOCK (st.st_mode)) {
    log_error ("%s: exists and is not a socket", sa->sun_path);
    return -1;
  }
  if (unix_socket_live (sa)) {
    log_error ("%s: another server is listening on this socket",
               sa->sun_path);
    return -1;
  }
  log_verbose ("%s: replacing a stale socket", sa->sun_path);
  if ((unlink (sa->sun_path) == -1 && errno != ENOENT) ||
      bind (fd, (const struct sockaddr *) sa, sizeof *sa) == -1) {
    log_error ("%s: %m", sa->sun_path);
    return -1;
  }
  return 0;
}

static int
open_unix (const char *path)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  const char *p = path;
  int fd;

  if (strcmp (path, "-") == 0) {
    if (make_private_path () == -1)
      return -1;
    p = unix_path;
  }
  if (strlen (p) >= sizeof sa.sun_path) {
    log_error ("%s: socket path too long", p);
    return -1;
  }
  strcpy (sa.sun_path, p);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1) {
    log_error ("socket: %m");
    return -1;
  }
  if (bind_unix (fd, &sa) == -1) {
    close (fd);
    return -1;
  }
  /* Ours from here on: removed at exit. */
  if (unix_path == NULL && (unix_path = strdup (path)) == NULL) {
    log_error ("out of memory");
    close (fd);
    unlink (sa.sun_path);
    return -1;
  }
  cfg.unix_path = unix_path;
  if (listen (fd, SOMAXCONN) == -1) {
    log_error ("%s: listen: %m", unix_path);
    close (fd);
    return -1;
  }
  return add_listener (fd);
}

/* "[::]:10809" or "0.0.0.0:10809" for messages. */
static void
addr_name (const struct addrinfo *a, char *buf, size_t len)
{
  char host[NI_MAXHOST], serv[NI_MAXSERV];

  if (getnameinfo (a->ai_addr, a->ai_addrlen, host, sizeof host, serv,
                   sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    snprintf (buf, len, "?");
  else
    snprintf (buf, len, a->ai_family == AF_INET6 ? "[%s]:%s" : "%s:%s",
              host, serv);
}

static void
set_port (struct addrinfo *a, uint16_t port)
{
  if (a->ai_family == AF_INET)
    ((struct sockaddr_in *) a->ai_addr)->sin_port = htons (port);
  else if (a->ai_family == AF_INET6)
    ((struct sockaddr_in6 *) a->ai_addr)->sin6_port = htons (port);
}

/* 0: listening on a; 1: this kind of address is not supported by the
 * kernel (IPv6 disabled): skipped; -1: failed, errno set. */
static int
open_one_tcp (const struct addrinfo *a)
{
  int fd, one = 1;

  fd = socket (a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
  if (fd == -1)
    return errno == EAFNOSUPPORT ? 1 : -1;
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
  if (add_listener (fd) == -1) {
    errno = EMFILE;
    return -1;
  }
  return 0;
}

static void
close_listeners (void)
{
  while (nlisteners > 0)
    close (listeners[--nlisteners].fd);
}

/* Listens on every address of res, all on one port: with port 0 the
 * first one's.  0, or -1 with *failed the address that did not bind and
 * errno why (the sockets opened so far are closed). */
static int
open_tcp_all (struct addrinfo *res, bool port0,
              const struct addrinfo **failed)
{
  struct addrinfo *a;
  uint16_t chosen = 0;
  int r;

  for (a = res; a; a = a->ai_next) {
    if (port0)
      set_port (a, chosen);
    r = open_one_tcp (a);
    if (r == -1) {
      int e = errno;
      close_listeners ();
      *failed = a;
      errno = e;
      return -1;
    }
    if (r == 0 && port0 && chosen == 0) {
      learn_address (listeners[nlisteners - 1].fd);
      chosen = (uint16_t) atoi (real_port);
    }
  }
  return 0;
}

static int
open_tcp (void)
{
  struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_ADDRCONFIG,
                            .ai_socktype = SOCK_STREAM };
  struct addrinfo *res;
  const struct addrinfo *failed = NULL;
  const char *port = cfg.port ? cfg.port : "10809";
  bool port0 = atoi (port) == 0;
  char where[NI_MAXHOST + NI_MAXSERV + 4];
  int r, tries = 0;

  r = getaddrinfo (cfg.ipaddr, port, &hints, &res);
  if (r) {
    log_error ("%s:%s: %s", cfg.ipaddr ? cfg.ipaddr : "*", port,
               gai_strerror (r));
    return -1;
  }
  /* With -p 0, the port the kernel chose on the first address may be
   * taken on another: try again with a new one. */
  do
    r = open_tcp_all (res, port0, &failed);
  while (r == -1 && port0 && errno == EADDRINUSE && failed != res &&
         ++tries < PORT0_TRIES);
  if (r == -1) {
    int e = errno;
    addr_name (failed, where, sizeof where);
    log_error ("cannot listen on %s: %s", where, strerror (e));
  }
  freeaddrinfo (res);
  if (r == 0 && nlisteners == 0) {
    log_error ("listening on %s port %s: no address to listen on",
               cfg.ipaddr ? cfg.ipaddr : "*", port);
    return -1;
  }
  if (r == 0)
    learn_address (listeners[0].fd);
  return r;
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

static ev_timer backoff_timer;

static void
backoff_cb (struct ev_loop *loop, ev_timer *w, int revents)
{
  size_t i;

  for (i = 0; i < nlisteners; i++)
    ev_io_start (loop, &listeners[i].w);
}

/* Logs an accept failure at most once per interval. */
static void
log_accept_failure (struct ev_loop *loop, int err)
{
  static ev_tstamp last;
  static unsigned long unreported;

  if (last && ev_now (loop) - last < ACCEPT_LOG_INTERVAL) {
    unreported++;
    return;
  }
  if (unreported)
    log_error ("accept: %s: not accepting for %g s (%lu more times in the "
               "last %.0f s)", strerror (err), ACCEPT_BACKOFF, unreported,
               ev_now (loop) - last);
  else
    log_error ("accept: %s: not accepting for %g s", strerror (err),
               ACCEPT_BACKOFF);
  last = ev_now (loop);
  unreported = 0;
}

/* Stops every listener for a while (see above). */
static void
accept_backoff (struct ev_loop *loop, int err)
{
  size_t i;

  log_accept_failure (loop, err);
  for (i = 0; i < nlisteners; i++)
    ev_io_stop (loop, &listeners[i].w);
  ev_timer_init (&backoff_timer, backoff_cb, ACCEPT_BACKOFF, 0.);
  ev_timer_start (loop, &backoff_timer);
}

static bool
is_resource_error (int err)
{
  return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
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
      if (is_resource_error (errno))
        accept_backoff (loop, errno);
      else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
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

  if (loop)
    ev_timer_stop (loop, &backoff_timer);
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
