/* SPDX-License-Identifier: BSD-3-Clause */
/* Captive mode (--run 'CMD'): the server runs CMD once it listens, with
 *   $uri         nbd+unix:///EXPORT?socket=PATH or nbd://HOST:PORT/EXPORT;
 *                with --tls=require nbds+unix:// or nbds://, and what a
 *                libnbd client needs to connect: USER@ and
 *                tls-psk-file=FILE (the first user of --tls-psk's file),
 *                or tls-certificates=DIR
 *   $tls         1 with --tls=on, 2 with --tls=require, else unset
 *   $unixsocket  the Unix socket, else unset
 *   $port        the TCP port (the real one with -p 0), else unset
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
#include "tls.h"

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

/* "?tls-psk-file=F" or "?tls-certificates=D" (with sep '?' or '&') for
 * --tls=require, else "". */
static char *
tls_query (char sep)
{
  const char *key = cfg.tls_psk ? "tls-psk-file" : "tls-certificates";
  const char *val = cfg.tls_psk ? cfg.tls_psk : cfg.tls_certificates;
  char *enc, *q;

  if (cfg.tls != TLS_REQUIRE || val == NULL)
    return strdup ("");
  enc = uri_encode (val);
  if (enc == NULL || asprintf (&q, "%c%s=%s", sep, key, enc) == -1)
    q = NULL;
  free (enc);
  return q;
}

/* "alice@" when clients must log in with a PSK, else "". */
static char *
tls_user (void)
{
  const char *user = cfg.tls_psk ? tls_psk_first_user () : NULL;
  char *enc, *u;

  if (cfg.tls != TLS_REQUIRE || user == NULL)
    return strdup ("");
  enc = uri_encode (user);
  if (enc == NULL || asprintf (&u, "%s@", enc) == -1)
    u = NULL;
  free (enc);
  return u;
}

static char *
make_uri (const char *name, const char *user)
{
  const char *s = cfg.tls == TLS_REQUIRE ? "s" : "";
  const char *sock = listen_unix (), *port = listen_port ();
  const char *host = listen_host () ? listen_host () : "localhost";
  char *esock = NULL, *query = NULL, *uri = NULL;
  int r = -1;

  if (sock) {
    esock = uri_encode (sock);
    query = tls_query ('&');
    if (esock && query)
      r = asprintf (&uri, "nbd%s+unix://%s/%s?socket=%s%s", s, user, name,
                    esock, query);
  }
  else if ((query = tls_query ('?')) != NULL)
    r = asprintf (&uri, strchr (host, ':') ? "nbd%s://%s[%s]:%s/%s%s"
                  : "nbd%s://%s%s:%s/%s%s", s, user, host,
                  port ? port : "10809", name, query);
  free (esock);
  free (query);
  return r == -1 ? NULL : uri;
}

char *
captive_uri (void)
{
  char *name = uri_encode (exports_default_name ()), *user = tls_user ();
  char *uri = name && user ? make_uri (name, user) : NULL;

  free (name);
  free (user);
  return uri;
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

static void
setenv_or_unset (const char *var, const char *value)
{
  if (value)
    setenv (var, value, 1);
  else
    unsetenv (var);
}

/* In the child: the environment, default signals, then the shell. */
static void
run_child (const char *uri)
{
  sigset_t none;

  setenv ("uri", uri, 1);
  setenv ("exportname", exports_default_name (), 1);
  setenv_or_unset ("unixsocket", listen_unix ());
  setenv_or_unset ("port", listen_unix () ? NULL : listen_port ());
  setenv_or_unset ("tls", cfg.tls == TLS_REQUIRE ? "2" :
                   cfg.tls == TLS_ON ? "1" : NULL);
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
