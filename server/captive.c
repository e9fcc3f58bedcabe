/* SPDX-License-Identifier: BSD-3-Clause */
/* Captive mode (--run 'CMD'): the server runs CMD once it listens, with
 *   $uri         nbd+unix:///EXPORT?socket=PATH or nbd://HOST:PORT/EXPORT
 *   $unixsocket  the Unix socket (with -U), else unset
 *   $port        the TCP port (without -U), else unset
 *   $exportname  the default export's name
 * and shuts down when CMD exits, exiting with its status (128 + signal
 * number when CMD was killed), as nbdkit --run does.
 */
#include <config.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

static ev_child child_watcher;

/* Percent-encodes what is not unreserved in a URI path or query. */
static char *
uri_encode (const char *s)
{
  static const char hex[] = "0123456789ABCDEF";
  char *out = malloc (3 * strlen (s) + 1), *p = out;

  if (out == NULL)
    return NULL;
  for (; *s; s++) {
    unsigned char ch = (unsigned char) *s;
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
        (ch >= '0' && ch <= '9') || strchr ("-._~/", ch))
      *p++ = (char) ch;
    else {
      *p++ = '%';
      *p++ = hex[ch >> 4];
      *p++ = hex[ch & 15];
    }
  }
  *p = '\0';
  return out;
}

char *
captive_uri (void)
{
  const struct export *def = exports_at (0);
  char *name = uri_encode (def ? def->name : ""), *sock = NULL, *uri = NULL;
  const char *host = cfg.ipaddr ? cfg.ipaddr : "localhost";
  int r;

  if (name == NULL)
    return NULL;
  if (cfg.unix_path) {
    sock = uri_encode (cfg.unix_path);
    r = sock ? asprintf (&uri, "nbd+unix:///%s?socket=%s", name, sock) : -1;
  }
  else
    r = asprintf (&uri, strchr (host, ':') ? "nbd://[%s]:%s/%s"
                  : "nbd://%s:%s/%s", host, cfg.port ? cfg.port : "10809",
                  name);
  free (name);
  free (sock);
  return r == -1 ? NULL : uri;
}

static void
child_cb (struct ev_loop *loop, ev_child *w, int revents)
{
  int status = w->rstatus, code;

  ev_child_stop (loop, w);
  if (WIFEXITED (status))
    code = WEXITSTATUS (status);
  else if (WIFSIGNALED (status))
    code = 128 + WTERMSIG (status);
  else
    code = 1;
  log_verbose ("--run command exited with status %d", code);
  server_shutdown (code);
}

/* In the child: the environment, default signals, then the shell. */
static void
run_child (const char *uri)
{
  const struct export *def = exports_at (0);
  sigset_t none;

  setenv ("uri", uri, 1);
  setenv ("exportname", def ? def->name : "", 1);
  if (cfg.unix_path) {
    setenv ("unixsocket", cfg.unix_path, 1);
    unsetenv ("port");
  }
  else {
    setenv ("port", cfg.port ? cfg.port : "10809", 1);
    unsetenv ("unixsocket");
  }
  signal (SIGPIPE, SIG_DFL);
  sigemptyset (&none);
  sigprocmask (SIG_SETMASK, &none, NULL);
  execl ("/bin/sh", "sh", "-c", cfg.run, (char *) NULL);
  perror ("cowbd: --run: /bin/sh");
  _exit (127);
}

int
captive_start (struct ev_loop *loop)
{
  char *uri = captive_uri ();
  pid_t pid;

  if (uri == NULL) {
    log_error ("out of memory");
    return -1;
  }
  pid = fork ();
  if (pid == -1) {
    log_error ("--run: fork: %m");
    free (uri);
    return -1;
  }
  if (pid == 0)
    run_child (uri);
  free (uri);
  ev_child_init (&child_watcher, child_cb, pid, 0);
  ev_child_start (loop, &child_watcher);
  return 0;
}
