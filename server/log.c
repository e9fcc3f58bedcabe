/* SPDX-License-Identifier: BSD-3-Clause */
/* Log lines, one each, written with one write(2) so that threads never
 * interleave them.  Never stdout: with -s that is the client's socket.
 *
 * Levels are syslog's.  Errors, warnings and notices (a repair at open,
 * a TLS failure, a refused export, a lock conflict) are always written;
 * LOG_INFO (connection lifecycle) with -v, LOG_DEBUG (every request)
 * with -vv.
 *
 * Destinations (--log):
 *   stderr  "2025-01-31T12:00:00.123Z cowbd: message"; when stderr is
 *           the journal (JOURNAL_STREAM names its device and inode, as
 *           systemd sets it) "<3>cowbd: message" instead, so that
 *           journald keeps the level and adds its own timestamp
 *   syslog  RFC 3164 datagrams "<27>Jan 31 12:00:00 cowbd[PID]: message"
 *           (facility daemon) to /dev/log, or to the socket named by
 *           --log=syslog:PATH; written by hand rather than with
 *           syslog(3) so that the socket can be named
 */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define LINE_MAX_BYTES 1024

static enum { DEST_STDERR, DEST_JOURNAL, DEST_SYSLOG } dest = DEST_STDERR;
static int syslog_fd = -1;

/* True when stderr is the stream JOURNAL_STREAM ("DEV:INODE") names. */
static bool
stderr_is_journal (void)
{
  const char *js = getenv ("JOURNAL_STREAM");
  unsigned long long dev, ino;
  struct stat st;

  if (js == NULL || sscanf (js, "%llu:%llu", &dev, &ino) != 2 ||
      fstat (STDERR_FILENO, &st) == -1)
    return false;
  return (unsigned long long) st.st_dev == dev &&
    (unsigned long long) st.st_ino == ino;
}

static int
syslog_open (const char *path)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };

  if (strlen (path) >= sizeof sun.sun_path) {
    fprintf (stderr, "cowbd: --log=syslog:%s: socket path too long\n", path);
    return -1;
  }
  strcpy (sun.sun_path, path);
  syslog_fd = socket (AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (syslog_fd == -1 ||
      connect (syslog_fd, (struct sockaddr *) &sun, sizeof sun) == -1) {
    fprintf (stderr, "cowbd: --log=syslog: %s: %s\n", path,
             strerror (errno));
    if (syslog_fd >= 0)
      close (syslog_fd);
    syslog_fd = -1;
    return -1;
  }
  return 0;
}

int
log_setup (const char *spec)
{
  if (spec == NULL || strcmp (spec, "stderr") == 0) {
    dest = stderr_is_journal () ? DEST_JOURNAL : DEST_STDERR;
    return 0;
  }
  if (strcmp (spec, "syslog") == 0 || strncmp (spec, "syslog:", 7) == 0) {
    if (syslog_open (spec[6] ? spec + 7 : "/dev/log") == -1)
      return -1;
    dest = DEST_SYSLOG;
    return 0;
  }
  fprintf (stderr, "cowbd: --log=%s: expected stderr, syslog or "
           "syslog:SOCKET\n", spec);
  return -1;
}

/* The prefix of a line: timestamp, journal priority or syslog header. */
static int
prefix (char *buf, size_t len, int prio)
{
  struct timespec ts;
  struct tm tm;
  char t[32];

  switch (dest) {
  case DEST_JOURNAL:
    return snprintf (buf, len, "<%d>cowbd: ", prio);
  case DEST_SYSLOG:
    /* As glibc's syslog(3) writes it: local time, no year. */
    clock_gettime (CLOCK_REALTIME, &ts);
    localtime_r (&ts.tv_sec, &tm);
    strftime (t, sizeof t, "%b %e %H:%M:%S", &tm);
    return snprintf (buf, len, "<%d>%s cowbd[%d]: ", LOG_DAEMON | prio, t,
                     (int) getpid ());
  case DEST_STDERR:
    break;
  }
  clock_gettime (CLOCK_REALTIME, &ts);
  gmtime_r (&ts.tv_sec, &tm);
  strftime (t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
  return snprintf (buf, len, "%s.%03ldZ cowbd: ", t, ts.tv_nsec / 1000000);
}

/* Writes one line; a log line lost is nothing to report. */
static void
emit (const char *line, size_t n)
{
  ssize_t r;

  if (dest == DEST_SYSLOG)
    r = send (syslog_fd, line, n - 1, MSG_NOSIGNAL);   /* no newline */
  else
    r = write (STDERR_FILENO, line, n);
  (void) r;
}

bool
log_enabled (int prio)
{
  return prio <= LOG_NOTICE || (prio == LOG_INFO && cfg.verbose >= 1) ||
    (prio >= LOG_DEBUG && cfg.verbose >= 2);
}

void
log_vmsg (int prio, const char *conn_prefix, const char *fmt, va_list ap)
{
  char line[LINE_MAX_BYTES];
  int n = prefix (line, sizeof line, prio), start, i;

  if (conn_prefix)
    n += snprintf (line + n, sizeof line - (size_t) n, "%s", conn_prefix);
  if (n > (int) sizeof line - 2)
    n = (int) sizeof line - 2;
  start = n;
  n += vsnprintf (line + n, sizeof line - (size_t) n - 1, fmt, ap);
  if (n > (int) sizeof line - 2)
    n = (int) sizeof line - 2;
  /* One line each, whatever a client named its export. */
  for (i = start; i < n; i++)
    if ((unsigned char) line[i] < 0x20 || line[i] == 0x7f)
      line[i] = '?';
  line[n++] = '\n';
  emit (line, (size_t) n);
}

void
log_msg (int prio, const char *fmt, ...)
{
  va_list ap;

  if (!log_enabled (prio))
    return;
  va_start (ap, fmt);
  log_vmsg (prio, NULL, fmt, ap);
  va_end (ap);
}

void
log_conn (const struct conn *c, int prio, const char *fmt, ...)
{
  char p[128];
  va_list ap;

  if (!log_enabled (prio))
    return;
  snprintf (p, sizeof p, "connection %lu (%s): ", c->id, c->peer);
  va_start (ap, fmt);
  log_vmsg (prio, p, fmt, ap);
  va_end (ap);
}

/* The engine's warnings (probing guessed raw, a repair at open). */
void
log_engine_warning (const char *msg)
{
  log_msg (LOG_WARNING, "warning: %s", msg);
}

bool
log_allow (struct log_budget *b, const char *what)
{
  struct timespec ts;
  uint64_t now;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  now = (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
  if (b->last_ns == 0)
    b->tokens = b->burst;
  else
    b->tokens += (double) (now - b->last_ns) / 1e9 * b->per_sec;
  if (b->tokens > b->burst)
    b->tokens = b->burst;
  b->last_ns = now;
  if (b->tokens < 1) {
    b->held_back++;
    return false;
  }
  b->tokens -= 1;
  if (b->held_back) {
    log_notice ("%lu more lines about %s were not logged", b->held_back,
                what);
    b->held_back = 0;
  }
  return true;
}
