/* SPDX-License-Identifier: BSD-3-Clause */
/* Messages on stderr, one line each, prefixed "cowbd: ".  Never stdout:
 * with -s that is the client's socket.  Lines are written with one
 * write so that threads do not interleave them.
 */
#include <config.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static void
log_v (const char *fmt, va_list ap)
{
  char line[1024];
  int n = snprintf (line, sizeof line, "cowbd: ");

  n += vsnprintf (line + n, sizeof line - (size_t) n - 1, fmt, ap);
  if (n > (int) sizeof line - 2)
    n = (int) sizeof line - 2;
  line[n++] = '\n';
  if (write (STDERR_FILENO, line, (size_t) n) == -1) {
    /* nowhere left to report it */
  }
}

void
log_error (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  log_v (fmt, ap);
  va_end (ap);
}

void
log_verbose (const char *fmt, ...)
{
  va_list ap;

  if (!cfg.verbose)
    return;
  va_start (ap, fmt);
  log_v (fmt, ap);
  va_end (ap);
}
