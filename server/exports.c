/* SPDX-License-Identifier: BSD-3-Clause */
/* The export table: which names the server answers to and the engine
 * image behind each.
 *
 * `cowbd [NAME=]IMAGE...`: each argument is an export, named NAME or,
 * without NAME=, after its file's base name.  The first is also the
 * default export: the empty name is an alias of it (it is listed once,
 * under its own name).  Each
 * image is opened once, here, and shared by every connection (the engine
 * is thread-safe), which is what makes NBD_FLAG_CAN_MULTI_CONN true.
 *
 * Clients find exports through export_lookup at each handshake, never
 * through a pointer kept from start-up, so that the table can later
 * change while the server runs.  Loop thread only.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "minmax.h"
#include "nbd-protocol.h"
#include "size.h"

static struct export *exports;
static size_t nr_exports;

static bool
name_taken (const char *name)
{
  size_t i;

  for (i = 0; i < nr_exports; i++)
    if (strcmp (exports[i].name, name) == 0)
      return true;
  return false;
}

/* Splits "NAME=IMAGE"; a prefix holding a '/' is part of a file name. */
static int
split_arg (const char *arg, char **name, char **filename)
{
  const char *eq = strchr (arg, '=');
  const char *base;

  if (eq && eq > arg && memchr (arg, '/', (size_t) (eq - arg)) == NULL) {
    *name = strndup (arg, (size_t) (eq - arg));
    *filename = strdup (eq + 1);
  }
  else {
    base = strrchr (arg, '/');
    *name = strdup (base ? base + 1 : arg);
    *filename = strdup (arg);
  }
  if (*name == NULL || *filename == NULL) {
    free (*name);
    free (*filename);
    log_error ("out of memory");
    return -1;
  }
  return 0;
}

int
exports_add (const char *arg)
{
  struct export *e;
  char *name, *filename;

  if (split_arg (arg, &name, &filename) == -1)
    return -1;
  if (filename[0] == '\0' || name[0] == '\0' ||
      strlen (name) > NBD_MAX_STRING || name_taken (name)) {
    log_error ("%s: %s", arg,
               filename[0] == '\0' ? "no image file named" :
               name[0] == '\0' ? "no export name (name it: NAME=IMAGE)" :
               name_taken (name) ? "export name used twice (name the "
               "exports: NAME=IMAGE)" :
               "export name longer than 4096 bytes");
    free (name);
    free (filename);
    return -1;
  }
  e = realloc (exports, (nr_exports + 1) * sizeof *exports);
  if (e == NULL) {
    free (name);
    free (filename);
    log_error ("out of memory");
    return -1;
  }
  exports = e;
  exports[nr_exports++] = (struct export) { .name = name,
                                            .filename = filename };
  return 0;
}

/* "qed, 10 GiB, backing base.raw, read-only" for LIST and INFO. */
static char *
describe (const struct image_info *info, bool readonly)
{
  char size[32], *d;
  const char *backing = info->backing_filename;

  size_format (info->virtual_size, size, sizeof size);
  if (asprintf (&d, "%s, %s%s%s%s", info->format, size,
                backing ? ", backing " : "", backing ? backing : "",
                readonly ? ", read-only" : "") == -1)
    return NULL;
  return d;
}

/* An image that opens read-only but not for writing (permissions, a
 * read-only file system, a feature the engine only reads) is an error
 * without -r: serving it read-only behind the user's back would make
 * every guest write fail.  Says which and how to serve it anyway. */
static void
report_open_error (struct export *e, const struct image_open_opts *opts)
{
  struct image_open_opts ro = *opts;
  char *rw_error;
  int err = image_errno ();
  struct image *img;

  if (cfg.readonly || (err != EACCES && err != EROFS && err != EPERM)) {
    log_error ("%s", image_error ());
    return;
  }
  rw_error = strdup (image_error ());
  ro.flags |= IMAGE_OPEN_READONLY;
  img = image_open (e->filename, &ro);
  if (img == NULL)
    log_error ("%s", image_error ());
  else {
    log_error ("%s (cannot open it for writing: add -r to serve it "
               "read-only)", rw_error ? rw_error : e->filename);
    image_close (img);
  }
  free (rw_error);
}

static int
export_open (struct export *e)
{
  struct image_open_opts opts = {
    .format = cfg.format,
    .flags = cfg.readonly ? IMAGE_OPEN_READONLY : 0,
    .cache_size = cfg.cache_size,
  };
  struct image_info info;

  e->stats = metrics_export_new ();
  if (e->stats == NULL) {
    log_error ("out of memory");
    return -1;
  }
  e->img = image_open (e->filename, &opts);
  if (e->img == NULL) {
    report_open_error (e, &opts);
    return -1;
  }
  image_get_info (e->img, &info);
  e->size = image_size (e->img);
  e->readonly = image_is_readonly (e->img);
  /* A cluster is the natural unit of I/O on an overlay; clamp it to
   * what the protocol allows a preferred size to be. */
  e->preferred_block = MAX (info.cluster_size, 4096u);
  e->preferred_block = MIN (e->preferred_block, 2u << 20);
  e->description = describe (&info, e->readonly);
  if (e->description == NULL) {
    log_error ("out of memory");
    return -1;
  }
  if (e->size > INT64_MAX) {
    log_error ("%s: image size %" PRIu64 " is too large for NBD",
               e->filename, e->size);
    return -1;
  }
  log_verbose ("export '%s': %s (%s)", e->name, e->filename, e->description);
  return 0;
}

int
exports_open (void)
{
  size_t i;

  for (i = 0; i < nr_exports; i++)
    if (export_open (&exports[i]) == -1)
      return -1;
  return 0;
}

int
exports_close (void)
{
  size_t i;
  int r = 0;

  for (i = 0; i < nr_exports; i++) {
    struct export *e = &exports[i];

    if (e->img && image_close (e->img) == -1) {
      log_error ("closing %s: %s", e->filename, image_error ());
      r = -1;
    }
    free (e->name);
    free (e->filename);
    free (e->description);
    metrics_export_free (e->stats);
  }
  free (exports);
  exports = NULL;
  nr_exports = 0;
  return r;
}

size_t
exports_count (void)
{
  return nr_exports;
}

const struct export *
exports_at (size_t i)
{
  return i < nr_exports ? &exports[i] : NULL;
}

const struct export *
export_lookup (const char *name, size_t len)
{
  size_t i;

  if (len == 0)
    return nr_exports ? &exports[0] : NULL;
  for (i = 0; i < nr_exports; i++)
    if (strlen (exports[i].name) == len &&
        memcmp (exports[i].name, name, len) == 0)
      return &exports[i];
  return NULL;
}

uint16_t
export_eflags (const struct export *exp, bool structured)
{
  uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH |
    NBD_FLAG_SEND_CACHE | NBD_FLAG_CAN_MULTI_CONN;

  if (exp->readonly)
    f |= NBD_FLAG_READ_ONLY;
  else
    f |= NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
      NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
  if (structured)
    f |= NBD_FLAG_SEND_DF;
  return f;
}
