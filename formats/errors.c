/* SPDX-License-Identifier: BSD-3-Clause */
/* Errors of the engine: the calling thread's last message and errno
 * (image_error, image_errno), and the helpers drivers fail with.  Each
 * message names the file and the fault in one line. */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checked-overflow.h"
#include "cleanup.h"
#include "internal.h"
#include "minmax.h"
#include "rounding.h"

/* ---- errors ----------------------------------------------------------- */

static _Thread_local char error_msg[ERROR_MSG_SIZE];
static _Thread_local int error_errno;

const char *
image_error (void)
{
  return error_msg[0] ? error_msg : "no error";
}

int
image_errno (void)
{
  return error_errno;
}

static void
set_error_v (int errnum, const char *prefix, const char *fmt, va_list ap)
{
  size_t n = 0;

  if (prefix)
    n = (size_t) snprintf (error_msg, sizeof error_msg, "%s: ", prefix);
  if (n < sizeof error_msg)
    vsnprintf (error_msg + n, sizeof error_msg - n, fmt, ap);
  error_errno = errnum;
}

int
error_set (int errnum, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  set_error_v (errnum, NULL, fmt, ap);
  va_end (ap);
  errno = errnum;
  return -1;
}

/* The public name of error_set, for the front ends. */
void
image_set_error (int errnum, const char *fmt, ...)
{
  char msg[ERROR_MSG_SIZE];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  error_set (errnum, "%s", msg);
}

int
error_file (struct image *img, int errnum, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  set_error_v (errnum, img->filename, fmt, ap);
  va_end (ap);
  errno = errnum;
  return -1;
}

int
error_syscall (struct image *img, const char *what)
{
  int e = errno;
  return error_file (img, e, "%s: %s", what, strerror (e));
}

void
check_report (image_report_fn report, void *opaque, const char *fmt, ...)
{
  char msg[256];
  va_list ap;

  if (report == NULL)
    return;
  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  report (opaque, msg);
}

int
error_prefix (const char *prefix)
{
  char why[sizeof error_msg];

  snprintf (why, sizeof why, "%s", error_msg);
  return error_set (error_errno, "%s%s", prefix, why);
}

int
error_again (void)
{
  errno = EAGAIN;
  error_errno = EAGAIN;
  return -1;
}

void
error_save (struct error_saved *e)
{
  e->errnum = error_errno;
  memcpy (e->msg, error_msg, sizeof e->msg);
}

void
error_restore (const struct error_saved *e)
{
  memcpy (error_msg, e->msg, sizeof error_msg);
  error_errno = e->errnum;
  errno = e->errnum;
}
