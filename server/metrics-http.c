/* SPDX-License-Identifier: BSD-3-Clause */
/* --metrics: GET /metrics over HTTP, through libmicrohttpd, on the
 * server's own loop.
 *
 *   --metrics=PORT           127.0.0.1:PORT (localhost unless told)
 *   --metrics=ADDR:PORT      that address ([ADDR] for IPv6)
 *   --metrics=unix:PATH      a Unix socket (removed at exit)
 *
 * The socket is made here (so that port 0 can be read back and a Unix
 * socket works) and handed to libmicrohttpd, which runs without threads
 * of its own: its epoll descriptor is watched by an ev_io and its
 * timeouts by an ev_timer, and every MHD_run happens on the loop thread.
 * So a scrape reads the export table and the connection list where they
 * live, with no lock, and a slow HTTP client costs a descriptor, never a
 * thread.  Connections are few (METRICS_MAX_CLIENTS) and idle ones are
 * dropped after METRICS_TIMEOUT seconds.
 */
#include <config.h>

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

#ifdef HAVE_LIBMICROHTTPD
#include <microhttpd.h>

#define METRICS_MAX_CLIENTS 32
#define METRICS_TIMEOUT     10          /* seconds */
#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define CONTENT_TYPE_OM \
  "application/openmetrics-text; version=1.0.0; charset=utf-8"

static int listen_fd = -1;
static char *unix_path;                 /* unlinked at exit */
static char where[128];
static struct MHD_Daemon *daemon_;
static ev_io epoll_w;
static ev_timer timeout_w;

static int
listen_unix_socket (const char *path)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  int fd;

  if (strlen (path) >= sizeof sun.sun_path) {
    log_error ("--metrics=unix:%s: socket path too long", path);
    return -1;
  }
  strcpy (sun.sun_path, path);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd == -1 || bind (fd, (struct sockaddr *) &sun, sizeof sun) == -1 ||
      listen (fd, 16) == -1) {
    log_error ("--metrics=unix:%s: %m", path);
    if (fd >= 0)
      close (fd);
    return -1;
  }
  unix_path = strdup (path);
  snprintf (where, sizeof where, "unix:%s", path);
  return fd;
}

/* Splits "[ADDR]:PORT", "ADDR:PORT" or "PORT" (host: 127.0.0.1). */
static int
split_host_port (const char *spec, char *host, size_t hlen, const char **port)
{
  const char *colon = strrchr (spec, ':');
  size_t n;

  if (colon == NULL) {
    snprintf (host, hlen, "127.0.0.1");
    *port = spec;
    return 0;
  }
  n = (size_t) (colon - spec);
  if (n >= 2 && spec[0] == '[' && spec[n - 1] == ']') {
    spec++;
    n -= 2;
  }
  if (n == 0 || n >= hlen)
    return -1;
  memcpy (host, spec, n);
  host[n] = '\0';
  *port = colon + 1;
  return **port ? 0 : -1;
}

static void
read_back_port (int fd, const char *host)
{
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  char port[NI_MAXSERV] = "?";

  if (getsockname (fd, (struct sockaddr *) &ss, &len) == 0)
    getnameinfo ((struct sockaddr *) &ss, len, NULL, 0, port, sizeof port,
                 NI_NUMERICSERV);
  snprintf (where, sizeof where, strchr (host, ':') ?
            "http://[%s]:%s/metrics" : "http://%s:%s/metrics", host, port);
}

static int
listen_tcp (const char *spec)
{
  struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                            .ai_flags = AI_NUMERICSERV | AI_PASSIVE };
  struct addrinfo *ai;
  char host[NI_MAXHOST];
  const char *port;
  int fd, r, one = 1;

  if (split_host_port (spec, host, sizeof host, &port) == -1) {
    log_error ("--metrics=%s: expected [ADDR:]PORT or unix:PATH", spec);
    return -1;
  }
  r = getaddrinfo (host, port, &hints, &ai);
  if (r != 0) {
    log_error ("--metrics=%s: %s", spec, gai_strerror (r));
    return -1;
  }
  fd = socket (ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd >= 0)
    setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd == -1 || bind (fd, ai->ai_addr, ai->ai_addrlen) == -1 ||
      listen (fd, 16) == -1) {
    log_error ("--metrics=%s: %m", spec);
    if (fd >= 0)
      close (fd);
    freeaddrinfo (ai);
    return -1;
  }
  freeaddrinfo (ai);
  read_back_port (fd, host);
  return fd;
}

int
metrics_listen (const char *spec)
{
  if (strncmp (spec, "unix:", 5) == 0)
    listen_fd = listen_unix_socket (spec + 5);
  else
    listen_fd = listen_tcp (spec);
  return listen_fd == -1 ? -1 : 0;
}

const char *
metrics_where (void)
{
  return where[0] ? where : NULL;
}

/* ---- HTTP ------------------------------------------------------------ */

static enum MHD_Result
reply_text (struct MHD_Connection *conn, unsigned status, const char *text)
{
  struct MHD_Response *resp;
  enum MHD_Result r;

  resp = MHD_create_response_from_buffer (strlen (text), (void *) text,
                                          MHD_RESPMEM_PERSISTENT);
  if (resp == NULL)
    return MHD_NO;
  MHD_add_response_header (resp, "Content-Type", "text/plain");
  r = MHD_queue_response (conn, status, resp);
  MHD_destroy_response (resp);
  return r;
}

/* The quality (0 to 1000) an Accept header gives one media range:
 * "TYPE[;version=V][;q=Q]".  Version v of OpenMetrics is acceptable only
 * if it is 1.0.0 or absent. */
static unsigned
range_quality (const char *r, size_t n, bool *openmetrics, bool *text)
{
  const char *semi = memchr (r, ';', n);
  size_t tn = semi ? (size_t) (semi - r) : n;
  unsigned q = 1000;
  char params[256];

  while (tn && (r[tn - 1] == ' ' || r[tn - 1] == '\t'))
    tn--;
  *openmetrics = tn == 28 && strncasecmp (r, "application/openmetrics-text",
                                          28) == 0;
  *text = (tn == 10 && strncasecmp (r, "text/plain", 10) == 0) ||
    (tn == 3 && strncmp (r, "*/*", 3) == 0) ||
    (tn == 6 && strncasecmp (r, "text/*", 6) == 0);
  if (semi == NULL)
    return q;
  n -= (size_t) (semi - r);
  if (n >= sizeof params)
    return 0;
  memcpy (params, semi, n);
  params[n] = '\0';
  for (char *sv, *p = strtok_r (params, ";", &sv); p;
       p = strtok_r (NULL, ";", &sv)) {
    p += strspn (p, " \t");
    if (strncasecmp (p, "q=", 2) == 0)
      q = (unsigned) (strtod (p + 2, NULL) * 1000 + 0.5);
    else if (*openmetrics && strncasecmp (p, "version=", 8) == 0 &&
             strncmp (p + 8, "1.0.0", 5) != 0)
      *openmetrics = false;
  }
  return q > 1000 ? 1000 : q;
}

/* Whether the client prefers OpenMetrics to the text format, as
 * Prometheus's default Accept header does. */
static bool
wants_openmetrics (const char *accept)
{
  unsigned om = 0, text = 0;

  while (accept && *accept) {
    size_t n = strcspn (accept, ",");
    bool is_om, is_text;
    unsigned q = range_quality (accept + strspn (accept, " \t"),
                                n - strspn (accept, " \t"), &is_om,
                                &is_text);

    if (is_om && q > om)
      om = q;
    if (is_text && q > text)
      text = q;
    accept += n + (accept[n] == ',');
  }
  return om > 0 && om >= text;
}

static enum MHD_Result
handle (void *cls, struct MHD_Connection *conn, const char *url,
        const char *method, const char *version, const char *upload,
        size_t *upload_size, void **con_cls)
{
  struct MHD_Response *resp;
  enum MHD_Result r;
  size_t len;
  char *body;
  bool om;

  if (strcmp (method, "GET") != 0 && strcmp (method, "HEAD") != 0)
    return reply_text (conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                       "only GET /metrics\n");
  if (strcmp (url, "/metrics") != 0)
    return reply_text (conn, MHD_HTTP_NOT_FOUND, "only GET /metrics\n");
  om = wants_openmetrics (MHD_lookup_connection_value (conn,
                                                      MHD_HEADER_KIND,
                                                      "Accept"));
  body = metrics_format (om, &len);
  if (body == NULL)
    return reply_text (conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                       "out of memory\n");
  resp = MHD_create_response_from_buffer (len, body, MHD_RESPMEM_MUST_FREE);
  if (resp == NULL) {
    free (body);
    return MHD_NO;
  }
  MHD_add_response_header (resp, "Content-Type",
                           om ? CONTENT_TYPE_OM : CONTENT_TYPE);
  r = MHD_queue_response (conn, MHD_HTTP_OK, resp);
  MHD_destroy_response (resp);
  return r;
}

/* ---- on the loop -------------------------------------------------------- */

static void
rearm (struct ev_loop *loop)
{
  MHD_UNSIGNED_LONG_LONG ms;

  ev_timer_stop (loop, &timeout_w);
  if (MHD_get_timeout (daemon_, &ms) == MHD_YES) {
    ev_timer_set (&timeout_w, (ev_tstamp) ms / 1000., 0.);
    ev_timer_start (loop, &timeout_w);
  }
}

static void
run_cb (struct ev_loop *loop, ev_io *w, int revents)
{
  MHD_run (daemon_);
  rearm (loop);
}

static void
timeout_cb (struct ev_loop *loop, ev_timer *w, int revents)
{
  MHD_run (daemon_);
  rearm (loop);
}

int
metrics_start (struct ev_loop *loop)
{
  const union MHD_DaemonInfo *info;

  if (listen_fd == -1)
    return 0;
  daemon_ = MHD_start_daemon (MHD_USE_EPOLL, 0, NULL, NULL, handle, NULL,
                              MHD_OPTION_LISTEN_SOCKET, listen_fd,
                              MHD_OPTION_CONNECTION_LIMIT,
                              (unsigned) METRICS_MAX_CLIENTS,
                              MHD_OPTION_CONNECTION_TIMEOUT,
                              (unsigned) METRICS_TIMEOUT,
                              MHD_OPTION_END);
  info = daemon_ ? MHD_get_daemon_info (daemon_, MHD_DAEMON_INFO_EPOLL_FD)
    : NULL;
  if (info == NULL) {
    log_error ("--metrics: cannot start the HTTP server (libmicrohttpd)");
    return -1;
  }
  listen_fd = -1;               /* libmicrohttpd closes it */
  ev_io_init (&epoll_w, run_cb, info->epoll_fd, EV_READ);
  ev_io_start (loop, &epoll_w);
  ev_timer_init (&timeout_w, timeout_cb, 0., 0.);
  log_verbose ("metrics: %s", where);
  return 0;
}

void
metrics_stop (struct ev_loop *loop)
{
  if (daemon_) {
    if (loop) {
      ev_io_stop (loop, &epoll_w);
      ev_timer_stop (loop, &timeout_w);
    }
    MHD_stop_daemon (daemon_);
    daemon_ = NULL;
  }
  if (listen_fd >= 0)
    close (listen_fd);
  listen_fd = -1;
  if (unix_path)
    unlink (unix_path);
  free (unix_path);
  unix_path = NULL;
}

#else /* !HAVE_LIBMICROHTTPD */

int
metrics_listen (const char *spec)
{
  log_error ("--metrics: this cowbd was built without libmicrohttpd");
  return -1;
}

int metrics_start (struct ev_loop *loop) { return 0; }
void metrics_stop (struct ev_loop *loop) { }
const char *metrics_where (void) { return NULL; }

#endif
