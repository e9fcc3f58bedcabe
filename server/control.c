/* SPDX-License-Identifier: BSD-3-Clause */
/* --control=PATH: runtime control over a Unix socket, in the style of
 * QMP, one JSON request and one JSON reply per line:
 *
 *   -> {"execute": "export-add", "arguments": {...}, "id": 1}
 *   <- {"return": {}, "id": 1}
 *   <- {"error": {"class": "GenericError", "desc": "..."}, "id": 1}
 *
 * The socket is mode 0600 and a peer must be our own user or root
 * (SO_PEERCRED); others are refused with a log line.  Everything here
 * runs on the loop except the commands themselves, which may open or
 * create images: each goes to a worker as a job (control-cmds.c), and
 * the connection reads no further request until its reply is queued, so
 * replies come in request order.
 *
 *   read_cb --> line --> parse (json-c) --> job --> [worker] control_run
 *                 ^                                         |
 *                 +---- next line <-- reply <-- job_done <--+  (loop)
 *
 * Bad input (malformed JSON, no "execute", unknown command, wrong
 * arguments, a line longer than CTL_MAX_LINE) gets an error reply and
 * the connection goes on; only EOF or a write error ends it.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#ifdef HAVE_JSON_C

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <json.h>

struct ctl {
  struct ctl *next;
  struct ev_loop *loop;
  ev_io rio, wio;
  int fd;
  unsigned long id;
  char *in;                     /* CTL_MAX_LINE bytes */
  size_t ilen;
  bool discarding;              /* skipping the rest of an overlong line */
  char *out;                    /* replies not yet written */
  size_t olen, ooff;
  bool busy;                    /* a command is with the workers */
  bool dead;                    /* closed; freed when not busy */
};

struct ctl_job {
  struct job job;
  struct ctl *c;
  char *cmd;
  json_object *args, *id;
  struct ctl_result res;
};

static int listen_fd = -1;
static char *sock_path;
static struct ev_loop *ctl_loop;
static ev_io accept_io;
static struct ctl *ctls;
static unsigned long next_id;

static void process_lines (struct ctl *c);

/* ---- the socket ------------------------------------------------------------ */

/* A socket file left by a server that died is replaced; one a live
 * server answers on is not. */
static int
clear_stale (const struct sockaddr_un *sun)
{
  struct stat st;
  int fd, r;

  if (lstat (sun->sun_path, &st) == -1)
    return 0;
  if (!S_ISSOCK (st.st_mode)) {
    log_error ("--control=%s: exists and is not a socket", sun->sun_path);
    return -1;
  }
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1)
    return -1;
  r = connect (fd, (const struct sockaddr *) sun, sizeof *sun);
  close (fd);
  if (r == 0) {
    log_error ("--control=%s: in use by another server", sun->sun_path);
    return -1;
  }
  unlink (sun->sun_path);
  return 0;
}

int
control_open (const char *path)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  mode_t old;
  int r;

  if (strlen (path) >= sizeof sun.sun_path) {
    log_error ("--control=%s: path too long for a Unix socket", path);
    return -1;
  }
  strcpy (sun.sun_path, path);
  if (clear_stale (&sun) == -1)
    return -1;
  listen_fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
                      0);
  if (listen_fd == -1) {
    log_error ("--control=%s: socket: %m", path);
    return -1;
  }
  old = umask (0177);           /* born 0600: no window for others */
  r = bind (listen_fd, (struct sockaddr *) &sun, sizeof sun);
  umask (old);
  if (r == -1 || chmod (path, 0600) == -1 || listen (listen_fd, 16) == -1) {
    log_error ("--control=%s: %m", path);
    close (listen_fd);
    listen_fd = -1;
    return -1;
  }
  sock_path = strdup (path);
  return 0;
}

/* ---- connections ----------------------------------------------------------- */

static void
ctl_free (struct ctl *c)
{
  struct ctl **p;

  for (p = &ctls; *p; p = &(*p)->next)
    if (*p == c) {
      *p = c->next;
      break;
    }
  free (c->in);
  free (c->out);
  free (c);
}

static void
ctl_close (struct ctl *c)
{
  if (c->dead)
    return;
  c->dead = true;
  ev_io_stop (c->loop, &c->rio);
  ev_io_stop (c->loop, &c->wio);
  close (c->fd);
  log_verbose ("control %lu: closed", c->id);
  if (!c->busy)
    ctl_free (c);
}

static void
flush_out (struct ctl *c)
{
  while (c->ooff < c->olen) {
    ssize_t n = write (c->fd, c->out + c->ooff, c->olen - c->ooff);
    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1 && errno == EAGAIN) {
      ev_io_start (c->loop, &c->wio);
      return;
    }
    if (n <= 0) {
      ctl_close (c);
      return;
    }
    c->ooff += (size_t) n;
  }
  c->ooff = c->olen = 0;
  ev_io_stop (c->loop, &c->wio);
}

static void
write_cb (struct ev_loop *loop, ev_io *w, int revents)
{
  flush_out (w->data);
}

/* Queues one reply line. */
static void
send_reply (struct ctl *c, json_object *reply)
{
  const char *s = json_object_to_json_string_ext (reply,
                                                  JSON_C_TO_STRING_PLAIN);
  size_t len = strlen (s);
  char *p = realloc (c->out, c->olen + len + 1);

  if (p == NULL) {
    ctl_close (c);
    return;
  }
  c->out = p;
  memcpy (c->out + c->olen, s, len);
  c->out[c->olen + len] = '\n';
  c->olen += len + 1;
  flush_out (c);
}

/* {"error": {"class": "GenericError", "desc": desc}, "id": id} */
static void
send_error (struct ctl *c, json_object *id, const char *desc)
{
  json_object *reply = json_object_new_object ();
  json_object *err = json_object_new_object ();

  json_object_object_add (err, "class",
                          json_object_new_string ("GenericError"));
  json_object_object_add (err, "desc", json_object_new_string (desc));
  json_object_object_add (reply, "error", err);
  if (id)
    json_object_object_add (reply, "id", json_object_get (id));
  send_reply (c, reply);
  json_object_put (reply);
}

/* ---- commands on a worker ---------------------------------------------------- */

static void
job_run (struct job *j)
{
  struct ctl_job *cj = (struct ctl_job *) j;

  control_run (cj->cmd, cj->args, &cj->res);
}

/* query-status: what only the loop knows. */
static void
add_loop_status (json_object *ret)
{
  json_object_object_add (ret, "connections",
                          json_object_new_int64 (conns_count ()));
}

static void
job_done (struct job *j)
{
  struct ctl_job *cj = (struct ctl_job *) j;
  struct ctl *c = cj->c;

  c->busy = false;
  if (cj->res.cut)
    conns_drain_removed ();
  if (cj->res.status && cj->res.ret)
    add_loop_status (cj->res.ret);
  if (cj->res.stats && cj->res.ret &&
      metrics_add_json (cj->res.ret, cj->res.stats_name) == -1 &&
      asprintf (&cj->res.error, "query-stats: no export named '%s'",
                cj->res.stats_name) == -1)
    cj->res.error = NULL;
  if (c->dead)
    ctl_free (c);
  else if (cj->res.error)
    send_error (c, cj->id, cj->res.error);
  else {
    json_object *reply = json_object_new_object ();
    json_object_object_add (reply, "return", cj->res.ret);
    cj->res.ret = NULL;
    if (cj->id)
      json_object_object_add (reply, "id", json_object_get (cj->id));
    send_reply (c, reply);
    json_object_put (reply);
  }
  json_object_put (cj->res.ret);
  json_object_put (cj->args);
  json_object_put (cj->id);
  free (cj->res.error);
  free (cj->res.stats_name);
  free (cj->cmd);
  free (cj);
  if (!c->dead) {
    ev_io_start (c->loop, &c->rio);
    process_lines (c);
  }
}

static void
submit (struct ctl *c, const char *cmd, json_object *args, json_object *id)
{
  struct ctl_job *cj = calloc (1, sizeof *cj);

  if (cj == NULL || (cj->cmd = strdup (cmd)) == NULL) {
    free (cj);
    send_error (c, id, "out of memory");
    return;
  }
  cj->c = c;
  cj->args = args ? json_object_get (args) : NULL;
  cj->id = id ? json_object_get (id) : NULL;
  cj->job.run = job_run;
  cj->job.done = job_done;
  c->busy = true;
  ev_io_stop (c->loop, &c->rio);
  log_verbose ("control %lu: %s", c->id, cmd);
  workers_submit_job (&cj->job);
}

/* ---- requests ---------------------------------------------------------------- */

/* The parsed request of one line, or NULL after an error reply. */
static json_object *
parse_line (struct ctl *c, const char *line, size_t len)
{
  json_tokener *tok = json_tokener_new ();
  json_object *req;
  enum json_tokener_error e;

  if (tok == NULL) {
    send_error (c, NULL, "out of memory");
    return NULL;
  }
  req = json_tokener_parse_ex (tok, line, (int) len);
  e = json_tokener_get_error (tok);
  if (req && e == json_tokener_success &&
      strspn (line + tok->char_offset, " \t\r") != len - tok->char_offset) {
    json_object_put (req);
    req = NULL;
    e = json_tokener_error_parse_unexpected;
  }
  json_tokener_free (tok);
  if (req == NULL) {
    char msg[128];
    snprintf (msg, sizeof msg, "malformed JSON: %s",
              e == json_tokener_continue ? "unexpected end of line"
              : json_tokener_error_desc (e));
    send_error (c, NULL, msg);
  }
  return req;
}

static void
handle_line (struct ctl *c, const char *line, size_t len)
{
  json_object *req, *exec = NULL, *args = NULL, *id = NULL;
  const char *cmd;

  if (strspn (line, " \t\r") == len)
    return;                     /* an empty line asks nothing */
  if (memchr (line, '\0', len)) {
    send_error (c, NULL, "malformed JSON: a NUL byte in the request");
    return;
  }
  req = parse_line (c, line, len);
  if (req == NULL)
    return;
  json_object_object_get_ex (req, "id", &id);
  if (!json_object_is_type (req, json_type_object))
    send_error (c, NULL, "a request is a JSON object");
  else if (!json_object_object_get_ex (req, "execute", &exec) ||
           !json_object_is_type (exec, json_type_string))
    send_error (c, id, "the request has no \"execute\" string");
  else if (json_object_object_get_ex (req, "arguments", &args) &&
           !json_object_is_type (args, json_type_object))
    send_error (c, id, "\"arguments\" must be an object");
  else if (!control_known (cmd = json_object_get_string (exec))) {
    char msg[160];
    snprintf (msg, sizeof msg, "the command '%.64s' was not found", cmd);
    send_error (c, id, msg);
  }
  else
    submit (c, cmd, args, id);
  json_object_put (req);
}

/* Handles the complete lines in c->in, one at a time while no command
 * is with the workers. */
static void
process_lines (struct ctl *c)
{
  char *nl;

  while (!c->dead && !c->busy &&
         (nl = memchr (c->in, '\n', c->ilen)) != NULL) {
    size_t len = (size_t) (nl - c->in);
    if (c->discarding)
      c->discarding = false;
    else
      handle_line (c, c->in, len);
    if (c->dead)
      return;
    memmove (c->in, nl + 1, c->ilen - len - 1);
    c->ilen -= len + 1;
  }
  if (!c->dead && c->ilen == CTL_MAX_LINE) {
    if (!c->discarding)
      send_error (c, NULL, "request line longer than 65536 bytes");
    c->discarding = true;
    c->ilen = 0;
  }
}

static void
read_cb (struct ev_loop *loop, ev_io *w, int revents)
{
  struct ctl *c = w->data;
  ssize_t n = read (c->fd, c->in + c->ilen, CTL_MAX_LINE - c->ilen);

  if (n == -1 && (errno == EAGAIN || errno == EINTR))
    return;
  if (n <= 0) {
    ctl_close (c);
    return;
  }
  c->ilen += (size_t) n;
  process_lines (c);
}

/* Our own user or root; others are told nothing and logged. */
static bool
peer_allowed (int fd, unsigned long id)
{
  struct ucred cr;
  socklen_t len = sizeof cr;

  if (getsockopt (fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == -1) {
    log_error ("control %lu: SO_PEERCRED: %m", id);
    return false;
  }
  if (cr.uid == 0 || cr.uid == getuid ())
    return true;
  log_notice ("control %lu: refused a client of uid %u (pid %d): only "
              "uid %u or root may control this server", id,
              (unsigned) cr.uid, (int) cr.pid, (unsigned) getuid ());
  return false;
}

static void
accept_cb (struct ev_loop *loop, ev_io *w, int revents)
{
  struct ctl *c;
  int fd = accept4 (listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

  if (fd == -1)
    return;
  if (!peer_allowed (fd, ++next_id)) {
    close (fd);
    return;
  }
  c = calloc (1, sizeof *c);
  if (c == NULL || (c->in = malloc (CTL_MAX_LINE)) == NULL) {
    free (c);
    close (fd);
    log_error ("control: out of memory");
    return;
  }
  c->fd = fd;
  c->id = next_id;
  c->loop = loop;
  ev_io_init (&c->rio, read_cb, fd, EV_READ);
  ev_io_init (&c->wio, write_cb, fd, EV_WRITE);
  c->rio.data = c->wio.data = c;
  c->next = ctls;
  ctls = c;
  ev_io_start (loop, &c->rio);
  log_verbose ("control %lu: connected", c->id);
}

void
control_start (struct ev_loop *loop)
{
  if (listen_fd == -1)
    return;
  ctl_loop = loop;
  ev_io_init (&accept_io, accept_cb, listen_fd, EV_READ);
  ev_io_start (loop, &accept_io);
}

void
control_stop (void)
{
  struct ctl *c, *next;

  if (listen_fd == -1)
    return;
  if (ctl_loop)
    ev_io_stop (ctl_loop, &accept_io);
  close (listen_fd);
  listen_fd = -1;
  if (sock_path)
    unlink (sock_path);
  free (sock_path);
  sock_path = NULL;
  for (c = ctls; c; c = next) {
    next = c->next;
    ctl_close (c);              /* a busy one is freed by its job */
  }
}

#else /* !HAVE_JSON_C: main.c refuses --control */

int
control_open (const char *path)
{
  log_error ("--control: this cowbd was built without json-c");
  return -1;
}

void
control_start (struct ev_loop *loop)
{
}

void
control_stop (void)
{
}

#endif /* HAVE_JSON_C */
