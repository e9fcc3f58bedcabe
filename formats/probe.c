/* SPDX-License-Identifier: BSD-3-Clause */
/* Probing safety: what keeps format probing from turning guest data into
 * image metadata.
 *
 * The danger.  A raw image is all guest data, sector 0 included.  If it
 * is opened by probing, a guest that writes a qcow2 (or QED) header
 * there, naming a host file such as /etc/shadow as its backing file, has
 * that file served to it at the next open.  Two rules close the door:
 *
 * 1. A raw image reached by probing keeps what the probe found.  An
 *    image opened read-write without a format that probes as raw gets a
 *    guard (and a warning at open, as qemu gives).  Every write, zero or
 *    trim touching its first 512 bytes runs under the guard's lock:
 *
 *      current sector 0 --merge the request's bytes (zeros for zero and
 *      trim, which may leave zeros)--> would-be sector 0 --probe--> raw?
 *
 *    and is refused with EPERM, changing nothing, unless the would-be
 *    sector still probes as raw.  As in qemu's raw driver
 *    (block/raw-format.c: a probed raw image refuses a write to sector 0
 *    whose new content bdrv_probe_all would not find raw); we also check
 *    zero and trim, and partial-sector writes, since they can complete a
 *    magic the sector already half holds.  The lock serialises the
 *    changes to sector 0, so two writes that are each harmless cannot
 *    together form a header.  Writes past the first sector cannot change
 *    the probe and never take the lock.  An explicit format (cowbd
 *    --format=raw, the plugin's format=raw, cowbd-img -f raw) skips
 *    probing and the guard: the caller then says what the file is.
 *
 * 2. A probed backing file never leads further.  A backing file whose
 *    format the image naming it records (qcow2's backing format
 *    extension; QED's "backing is raw, do not probe" feature) is opened
 *    in that format.  One whose format is not recorded is probed, and if
 *    it probes as a format with a backing file of its own, the open is
 *    refused: a raw disk a guest wrote a header into, perhaps while it was
 *    served with an explicit raw format somewhere else, looks exactly
 *    like that.  Recording the format (cowbd-img rebase -u -F) lifts the
 *    refusal.  The one exception is a QED image named by a QED image:
 *    QED can record no backing format but raw, so chains of QED clones
 *    are only ever followed by probing.  The exception is safe as long
 *    as a raw backing file of a QED image carries the "raw" feature,
 *    which cowbd-img and qemu-img set whenever they create or rebase
 *    onto a raw file.
 *
 * The probed top image itself may be any format with a backing file:
 * that is the file the user named, and rule 1 keeps guests from making
 * it into one.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "minmax.h"

/* What the probe reads: the first sector (image.c probe_fd). */
#define PROBE_SECTOR 512

struct probe_guard {
  pthread_mutex_t lock;         /* serialises changes to sector 0 */
};

/* ---- warnings --------------------------------------------------------- */

static image_warn_fn warn_fn;   /* NULL: stderr */
static image_warn_fn alert_fn;  /* NULL: as warnings */

void
image_set_warn (image_warn_fn fn)
{
  warn_fn = fn;
}

void
image_set_alert (image_warn_fn fn)
{
  alert_fn = fn;
}

static void
emit (image_warn_fn fn, const char *fmt, va_list ap)
{
  char msg[1024];

  vsnprintf (msg, sizeof msg, fmt, ap);
  if (fn)
    fn (msg);
  else
    fprintf (stderr, "%s: warning: %s\n", program_invocation_short_name,
             msg);
}

void
engine_warn (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  emit (warn_fn, fmt, ap);
  va_end (ap);
}

void
engine_alert (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  emit (alert_fn ? alert_fn : warn_fn, fmt, ap);
  va_end (ap);
}

/* ---- rule 1: the guard of a probed raw image ---------------------------- */

static bool
format_was_probed (const struct image_open_opts *opts)
{
  return opts->format == NULL || strcmp (opts->format, "auto") == 0;
}

int
probe_guard_open (struct image *img, const struct image_open_opts *opts)
{
  if (!format_was_probed (opts) || img->drv != &raw_driver || img->readonly)
    return 0;
  img->guard = malloc (sizeof *img->guard);
  if (img->guard == NULL)
    return error_file (img, ENOMEM, "out of memory");
  pthread_mutex_init (&img->guard->lock, NULL);
  engine_warn ("%s: no format given and probing guessed raw; probing raw "
               "images is unsafe, so writes that would make its first "
               "sector look like another format are refused (give the "
               "format raw explicitly to lift this)", img->filename);
  return 0;
}

void
probe_guard_free (struct image *img)
{
  if (img->guard == NULL)
    return;
  pthread_mutex_destroy (&img->guard->lock);
  free (img->guard);
  img->guard = NULL;
}

static const char *
op_name (enum probe_op op)
{
  switch (op) {
  case PROBE_OP_WRITE: return "write";
  case PROBE_OP_ZERO: return "write zeroes";
  case PROBE_OP_TRIM: return "trim";
  }
  abort ();
}

/* Refuses the change unless sector 0 would still probe as raw.  Called
 * with the guard's lock held. */
static int
check_sector0 (struct image *img, enum probe_op op, const void *buf,
               uint64_t count, uint64_t offset)
{
  uint8_t sector[PROBE_SECTOR];
  size_t n = (size_t) MIN ((uint64_t) PROBE_SECTOR, img->size);
  size_t len = (size_t) MIN (count, n - offset);
  const struct driver *drv;

  /* The request lies within the image and starts in sector 0, so
   * offset < n. */
  if (img->drv->pread (img, sector, n, 0) == -1)
    return -1;
  if (op == PROBE_OP_WRITE)
    memcpy (sector + offset, buf, len);
  else
    memset (sector + offset, 0, len);
  drv = chain_probe_buf (sector, n);
  if (drv != &raw_driver)
    return error_file (img, EPERM, "%s of %" PRIu64 " bytes at offset %"
                       PRIu64 " refused: the first sector would then probe "
                       "as %s, and this image's format was probed as raw "
                       "(give the format raw explicitly to allow it)",
                       op_name (op), count, offset, drv->name);
  return 0;
}

static int
run_op (struct image *img, enum probe_op op, const void *buf,
        uint64_t count, uint64_t offset, unsigned flags)
{
  switch (op) {
  case PROBE_OP_WRITE:
    return img->drv->pwrite (img, buf, (size_t) count, offset, flags);
  case PROBE_OP_ZERO:
    return img->drv->zero (img, count, offset, flags);
  case PROBE_OP_TRIM:
    return img->drv->trim (img, count, offset, flags);
  }
  abort ();
}

int
probe_guarded_op (struct image *img, enum probe_op op, const void *buf,
                  uint64_t count, uint64_t offset, unsigned flags)
{
  pthread_mutex_t *lock = &img->guard->lock;
  int r;

  pthread_mutex_lock (lock);
  r = check_sector0 (img, op, buf, count, offset);
  if (r == 0)
    r = run_op (img, op, buf, count, offset, flags);
  pthread_mutex_unlock (lock);
  return r;
}

/* ---- rule 2: where a probed backing file may lead --------------------- */

int
probe_check_backing (struct image *img, unsigned flags, const char *referrer)
{
  bool qed_referrer = flags & CHAIN_OPEN_QED_REFERRER;

  if (!(flags & CHAIN_OPEN_PROBED_BACKING) || img->backing_filename == NULL)
    return 0;
  if (qed_referrer && img->drv == &qed_driver)
    return 0;
  return error_set (EINVAL, "%s: backing file %s probes as %s with a "
                    "backing file of its own (%s), which is not followed "
                    "when the format is only probed; %s%s%s",
                    referrer, img->filename, img->drv->name,
                    img->backing_filename,
                    qed_referrer ? "a QED image can record no backing "
                    "format but raw (use a qcow2 overlay, with -F " :
                    "record the backing format (cowbd-img rebase -u ... -F ",
                    img->drv->name, ")");
}
