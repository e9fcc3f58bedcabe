/* SPDX-License-Identifier: BSD-3-Clause */
/* Open host files: one engine image per (device, inode) per process.
 *
 * An image is opened here for an export (files_acquire from
 * registry_get) or for an overlay that reads it as its backing file
 * (the engine's backing cache: files_cache_get, while the overlay's own
 * image_open runs).  Both share one entry, so a base read by 600 clones
 * is one descriptor, one lock and one metadata cache:
 *
 *   files_acquire (c1) -> image_open (c1, cache) -> files_cache_get (base)
 *                                                   -> image_open (base)
 *   files_acquire (c2) -> image_open (c2, cache) -> files_cache_get (base)
 *                                                   -> refs++
 *
 * Opens run under open_lock, so an entry is only ever inserted by one
 * thread at a time; a thread-local stack of the files it is opening
 * refuses chains that loop back or grow past IMAGE_MAX_CHAIN.
 *
 * When refs drops to 0 the entry goes idle; the reaper thread closes it
 * idle_ms later unless someone took it again.  A file being closed is
 * waited for, never reopened at the same time (its own locks would
 * refuse the second open).
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "internal.h"

/* The files this thread is opening, outermost first. */
static _Thread_local struct image_file_id opening[IMAGE_MAX_CHAIN + 1];
static _Thread_local unsigned nopening;

static uint64_t
now_ms (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static struct reg_file *
find_by_id (struct registry *r, const struct image_file_id *id)
{
  struct reg_file *f;

  for (f = r->files; f; f = f->next)
    if (image_file_id_equal (&f->id, id))
      return f;
  return NULL;
}

static struct reg_file *
find_by_image (struct registry *r, struct image *img)
{
  struct reg_file *f;

  for (f = r->files; f; f = f->next)
    if (f->img == img)
      return f;
  return NULL;
}

static void
unlink_file (struct registry *r, struct reg_file *f)
{
  struct reg_file **p;

  for (p = &r->files; *p; p = &(*p)->next)
    if (*p == f) {
      *p = f->next;
      return;
    }
}

/* ---- opening -------------------------------------------------------------- */

static int
push_opening (const struct image_file_id *id, const char *path)
{
  unsigned i;

  for (i = 0; i < nopening; i++)
    if (image_file_id_equal (&opening[i], id)) {
      image_set_error (ELOOP, "%s: backing chain loop: this file is its "
                       "own backing file", path);
      return -1;
    }
  if (nopening > IMAGE_MAX_CHAIN) {
    image_set_error (ELOOP, "%s: backing chain deeper than %d images", path,
                     IMAGE_MAX_CHAIN);
    return -1;
  }
  opening[nopening++] = *id;
  return 0;
}

static bool
is_permission_error (int e)
{
  return e == EROFS || e == EACCES || e == EPERM;
}

/* image_open as the registry does it: with the backing cache, and,
 * with rw_fallback, read-only when the file cannot be written. */
static struct image *
open_image (struct registry *r, const char *path, bool readonly,
            const char *format, const char *const *backing_dirs)
{
  struct image_open_opts o = {
    .format = format,
    .cache_size = r->cfg.cache_size,
    .remote_timeout_ms = r->cfg.remote_timeout_ms,
    .base_cache_dir = r->cfg.base_cache_dir,
    .base_cache_size = r->cfg.base_cache_size,
    .flags = readonly ? IMAGE_OPEN_READONLY : 0,
    .backing_cache = &r->cache,
    .backing_dirs = backing_dirs,
  };
  struct image *img = image_open (path, &o);

  if (img == NULL && !readonly && r->cfg.rw_fallback &&
      is_permission_error (image_errno ())) {
    reg_warn (r, "%s; serving it read-only", image_error ());
    o.flags = IMAGE_OPEN_READONLY;
    img = image_open (path, &o);
  }
  return img;
}

/* Takes a reference to f (lock held), refusing to hand a writable
 * image to an overlay, or one whose chain lies outside backing_dirs
 * (an open under another policy made it). */
static struct reg_file *
take (struct registry *r, struct reg_file *f, const char *path,
      bool as_backing, const char *const *backing_dirs)
{
  if (image_check_confined (f->img, backing_dirs) == -1)
    return NULL;
  if (as_backing && !image_is_readonly (f->img)) {
    image_set_error (EBUSY, "%s: image is in use (served writable by this "
                     "process)", path);
    return NULL;
  }
  f->refs++;
  if (as_backing)
    f->backing_refs++;
  return f;
}

/* The entry of id (lock held), after waiting out a close; NULL if none. */
static struct reg_file *
find_settled (struct registry *r, const struct image_file_id *id)
{
  struct reg_file *f;

  while ((f = find_by_id (r, id)) != NULL && f->closing)
    pthread_cond_wait (&r->cond, &r->lock);
  return f;
}

/* Opens path as a new entry (open_lock held, lock not held). */
static struct reg_file *
open_file (struct registry *r, const char *path,
           const struct image_file_id *id,
           bool readonly, const char *format, bool as_backing,
           const char *const *backing_dirs)
{
  struct reg_file *f = calloc (1, sizeof *f);

  if (f == NULL) {
    image_set_error (ENOMEM, "%s: out of memory", path);
    return NULL;
  }
  if (push_opening (id, path) == -1) {
    free (f);
    return NULL;
  }
  f->img = open_image (r, path, readonly, format, backing_dirs);
  nopening--;
  if (f->img == NULL) {
    free (f);
    return NULL;
  }
  f->id = *id;
  f->refs = 1;
  f->backing_refs = as_backing;
  pthread_mutex_lock (&r->lock);
  f->next = r->files;
  r->files = f;
  pthread_mutex_unlock (&r->lock);
  reg_debug (r, "file %s is open%s", path,
             image_is_readonly (f->img) ? " read-only" : "");
  return f;
}

struct reg_file *
files_acquire (struct registry *r, const char *path, bool readonly,
               const char *format, bool as_backing,
               const char *const *backing_dirs)
{
  struct image_file_id id;
  struct reg_file *f;

  /* A remote base (an NBD URI) is identified by its URI. */
  if (image_file_id_path (path, &id) == -1) {
    image_set_error (errno, "%s: %s", path, strerror (errno));
    return NULL;
  }
  /* A clone base's chain was chosen by whoever named the base: it may
   * lead anywhere, a remote golden image included (confine.c). */
  if (as_backing && clone_is_base (r, &id))
    backing_dirs = NULL;
  pthread_mutex_lock (&r->lock);
  f = find_settled (r, &id);
  if (f) {
    f = take (r, f, path, as_backing, backing_dirs);
    pthread_mutex_unlock (&r->lock);
    return f;
  }
  if (!readonly && !as_backing && r->dir)
    scan_dir (r, false);        /* a new overlay may name this file */
  if (!readonly && reg_is_known_backing (r, &id)) {
    reg_debug (r, "%s is the backing file of an export: opening it "
               "read-only", path);
    readonly = true;
  }
  pthread_mutex_unlock (&r->lock);
  return open_file (r, path, &id, readonly || as_backing, format,
                    as_backing, backing_dirs);
}

/* ---- closing --------------------------------------------------------------- */

static void *reaper (void *arg);

static void
start_reaper (struct registry *r)
{
  sigset_t all, old;

  if (r->reaper_running || r->stopping)
    return;
  sigfillset (&all);            /* signals are the front end's business */
  pthread_sigmask (SIG_BLOCK, &all, &old);
  if (pthread_create (&r->reaper, NULL, reaper, r) == 0)
    r->reaper_running = true;
  pthread_sigmask (SIG_SETMASK, &old, NULL);
}

void
files_release (struct registry *r, struct reg_file *f, bool as_backing)
{
  if (as_backing)
    f->backing_refs--;
  if (--f->refs > 0)
    return;
  f->idle_deadline = now_ms () + r->cfg.idle_ms;
  start_reaper (r);
  pthread_cond_broadcast (&r->cond);
}

/* Closes f, which the caller has marked closing (lock held; dropped
 * around the close: the engine puts f's backing image back, which
 * takes the lock). */
static int
close_file (struct registry *r, struct reg_file *f)
{
  int ret;

  pthread_mutex_unlock (&r->lock);
  ret = image_close (f->img);
  if (ret == -1)
    reg_debug (r, "closing: %s", image_error ());
  pthread_mutex_lock (&r->lock);
  /* A close that fails (a sync: data may be lost) is the process's
   * failure, even when the reaper closed an idle file long before. */
  if (ret == -1 && r->close_error == NULL)
    r->close_error = strdup (image_error ());
  unlink_file (r, f);
  free (f);
  pthread_cond_broadcast (&r->cond);
  return ret;
}

/* The idle file due first (lock held), or NULL; *due its deadline. */
static struct reg_file *
next_idle (struct registry *r, uint64_t *due)
{
  struct reg_file *f, *best = NULL;

  for (f = r->files; f; f = f->next)
    if (f->refs == 0 && !f->closing &&
        (best == NULL || f->idle_deadline < best->idle_deadline))
      best = f;
  if (best)
    *due = best->idle_deadline;
  return best;
}

static void
wait_until (struct registry *r, uint64_t due_ms)
{
  struct timespec ts;
  uint64_t now = now_ms (), wait = due_ms > now ? due_ms - now : 0;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  ts.tv_sec += (time_t) (wait / 1000);
  ts.tv_nsec += (long) (wait % 1000) * 1000000;
  if (ts.tv_nsec >= 1000000000) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000;
  }
  pthread_cond_timedwait (&r->cond, &r->lock, &ts);
}

static void *
reaper (void *arg)
{
  struct registry *r = arg;
  struct reg_file *f;
  uint64_t due;

  pthread_mutex_lock (&r->lock);
  while (!r->stopping) {
    f = next_idle (r, &due);
    if (f == NULL)
      pthread_cond_wait (&r->cond, &r->lock);
    else if (due > now_ms ())
      wait_until (r, due);
    else {
      f->closing = true;
      close_file (r, f);
    }
  }
  pthread_mutex_unlock (&r->lock);
  return NULL;
}

/* ---- the engine's backing cache ------------------------------------------- */

struct image *
files_cache_get (void *opaque, const char *path,
                 const struct image_open_opts *opts)
{
  struct registry *r = opaque;
  struct reg_file *f = files_acquire (r, path, true, opts->format, true,
                                      opts->backing_dirs);

  return f ? f->img : NULL;
}

void
files_cache_put (void *opaque, struct image *img)
{
  struct registry *r = opaque;
  struct reg_file *f;

  pthread_mutex_lock (&r->lock);
  f = find_by_image (r, img);
  if (f)
    files_release (r, f, true);
  pthread_mutex_unlock (&r->lock);
}

/* ---- the end ---------------------------------------------------------------- */

/* A file no open image reads as its backing file (lock held). */
static struct reg_file *
next_top (struct registry *r)
{
  struct reg_file *f;

  for (f = r->files; f; f = f->next)
    if (f->backing_refs == 0 && !f->closing)
      return f;
  return NULL;
}

int
files_close_all (struct registry *r)
{
  struct reg_file *f;
  bool running;
  int ret = 0;

  pthread_mutex_lock (&r->lock);
  r->stopping = true;
  running = r->reaper_running;
  r->reaper_running = false;
  pthread_cond_broadcast (&r->cond);
  pthread_mutex_unlock (&r->lock);
  if (running)
    pthread_join (r->reaper, NULL);

  /* Overlays first: closing one puts its backing image back. */
  pthread_mutex_lock (&r->lock);
  while ((f = next_top (r)) != NULL) {
    f->closing = true;
    if (close_file (r, f) == -1)
      ret = -1;
  }
  pthread_mutex_unlock (&r->lock);
  return ret;
}
