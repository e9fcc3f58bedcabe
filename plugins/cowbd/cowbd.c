/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-cowbd-plugin: serves raw and QED images (QED with a backing
 * chain) through nbdkit, on the cowbd format engine (formats/image.h).
 *
 * A thin adapter.  This file parses the parameters and turns each nbdkit
 * callback into one engine call; exports.c decides which engine image
 * serves which export and opens each one once.  A connection's handle is
 * only a pointer to its export plus whether the connection may write: the
 * image, with its metadata cache, is shared by every connection, so a
 * flush or FUA on one is seen by all (can_multi_conn).
 *
 *   nbdkit callback        engine call
 *   pread                  image_pread
 *   pwrite (FUA)           image_pwrite (IMAGE_FUA)
 *   zero (MAY_TRIM, FUA,   image_zero (IMAGE_MAY_TRIM, IMAGE_FUA,
 *         FAST_ZERO)                   IMAGE_FAST_ZERO)
 *   trim (FUA)             image_trim (IMAGE_FUA)
 *   flush                  image_flush
 *   extents (REQ_ONE)      image_extents (IMAGE_EXTENTS_ONE)
 *   cache                  image_cache
 *
 * Errors: the engine's one-line message goes to nbdkit_error and its
 * errno to the client through nbdkit_set_error, unchanged (the engine
 * already picks the errno NBD names).  The one exception is the ENOTSUP
 * of a fast zero that would be slow: a normal answer, logged as debug.
 */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "exports.h"
#include "image.h"
#include "minmax.h"
#include "size.h"
#include "stats.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

/* Advertised block sizes: requests of any alignment work (the engine
 * reads and rewrites partial clusters), the cluster is the size that
 * needs no read-modify-write, and 32 MiB bounds one request's memory. */
#define BLOCK_MINIMUM 1
#define BLOCK_PREFERRED_RAW 4096
#define BLOCK_MAXIMUM (32U << 20)

/* block_status replies stop after this many extents (a client asks
 * again from where the reply ended), bounding one request's work. */
#define MAX_EXTENTS 65536

/* ---- parameters ---------------------------------------------------------- */

static char *file;              /* absolute path */
static char *dir;               /* absolute path */
static const char *format;      /* NULL: probe */
static uint64_t cache_size;     /* 0: the engine's default */
/* clone-from=[TEMPLATE=]BASE (repeatable), clone-dir=, max-exports= */
static char **clone_tmpl, **clone_base;
static size_t nclones;
static char *clone_dir;
static uint64_t max_exports;

/* clone-from=[TEMPLATE=]BASE */
static int
add_clone_from (const char *value)
{
  size_t tlen;
  const char *path = registry_clone_from_split (value, &tlen);
  bool named = tlen > 0;
  char *tmpl = named ? strndup (value, tlen) : NULL;
  char *base = nbdkit_absolute_path (path);
  char **t = realloc (clone_tmpl, (nclones + 1) * sizeof *t);
  char **b = t ? realloc (clone_base, (nclones + 1) * sizeof *b) : NULL;

  if (t)
    clone_tmpl = t;
  if (b)
    clone_base = b;
  if ((named && tmpl == NULL) || base == NULL || t == NULL || b == NULL) {
    free (tmpl);
    free (base);
    nbdkit_error ("clone-from=%s: out of memory", value);
    return -1;
  }
  clone_tmpl[nclones] = tmpl;
  clone_base[nclones++] = base;
  return 0;
}
static char **backing_dirs;     /* backing-dir=, NULL-terminated */
static size_t nbacking_dirs;
static unsigned remote_timeout_ms; /* 0: the engine's default */
static char *base_cache_dir;    /* base-cache=, absolute */
static uint64_t base_cache_size;

/* True if name is "auto" or one of the engine's IMAGE_FORMATS. */
static int
known_format (const char *name)
{
  const char *p = IMAGE_FORMATS;
  size_t n = strlen (name);

  if (strcmp (name, "auto") == 0)
    return 1;
  while (*p) {
    size_t len = strcspn (p, ", ");
    if (len == n && strncmp (p, name, n) == 0)
      return 1;
    p += len;
    p += strspn (p, ", ");
  }
  return 0;
}

/* file= and dir= take one path each, made absolute now (nbdkit changes
 * directory before serving). */
static int
set_path (char **dst, const char *key, const char *value)
{
  if (*dst != NULL) {
    nbdkit_error ("%s=%s: %s= given twice%s", key, value, key,
                  strcmp (key, "file") == 0
                  ? " (to serve several images use dir=)" : "");
    return -1;
  }
  if (value[0] == '\0') {
    nbdkit_error ("%s=: empty path", key);
    return -1;
  }
  *dst = nbdkit_absolute_path (value);
  return *dst ? 0 : -1;
}

/* backing-dir=DIR, repeatable: made absolute, checked to be a
 * directory. */
static int
add_backing_dir (const char *value)
{
  char **v = realloc (backing_dirs, (nbacking_dirs + 2) * sizeof *v);
  struct stat st;

  if (v == NULL) {
    nbdkit_error ("backing-dir=%s: %m", value);
    return -1;
  }
  backing_dirs = v;
  v[nbacking_dirs] = NULL;
  if (value[0] == '\0') {
    nbdkit_error ("backing-dir=: empty path");
    return -1;
  }
  if (stat (value, &st) == -1) {
    nbdkit_error ("backing-dir=%s: %m", value);
    return -1;
  }
  if (!S_ISDIR (st.st_mode)) {
    nbdkit_error ("backing-dir=%s: not a directory", value);
    return -1;
  }
  v[nbacking_dirs] = nbdkit_absolute_path (value);
  if (v[nbacking_dirs] == NULL)
    return -1;
  v[++nbacking_dirs] = NULL;
  return 0;
}

/* remote-timeout=SECONDS: 1 to 3600. */
static int
parse_remote_timeout (const char *value)
{
  char *end;
  long n;

  errno = 0;
  n = strtol (value, &end, 10);
  if (errno || end == value || *end || n < 1 || n > 3600) {
    nbdkit_error ("remote-timeout=%s: expected 1 to 3600 seconds", value);
    return -1;
  }
  remote_timeout_ms = (unsigned) n * 1000;
  return 0;
}

static int
cowbd_config (const char *key, const char *value)
{
  if (strcmp (key, "file") == 0)
    return set_path (&file, key, value);
  if (strcmp (key, "dir") == 0)
    return set_path (&dir, key, value);
  if (strcmp (key, "clone-dir") == 0)
    return set_path (&clone_dir, key, value);
  if (strcmp (key, "clone-from") == 0)
    return add_clone_from (value);
  if (strcmp (key, "max-exports") == 0) {
    if (nbdkit_parse_uint64_t ("max-exports", value, &max_exports) == -1)
      return -1;
    return 0;
  }
  if (strcmp (key, "format") == 0) {
    if (!known_format (value)) {
      nbdkit_error ("format=%s: unknown format (expected auto, %s)", value,
                    IMAGE_FORMATS);
      return -1;
    }
    format = strcmp (value, "auto") == 0 ? NULL : value;
    return 0;
  }
  if (strcmp (key, "backing-dir") == 0)
    return add_backing_dir (value);
  if (strcmp (key, "cache-size") == 0) {
    if (size_parse (value, &cache_size) == -1) {
      nbdkit_error ("cache-size=%s: not a size (e.g. 64M)", value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "remote-timeout") == 0)
    return parse_remote_timeout (value);
  if (strcmp (key, "base-cache") == 0)
    return set_path (&base_cache_dir, key, value);
  if (strcmp (key, "base-cache-size") == 0) {
    if (size_parse (value, &base_cache_size) == -1) {
      nbdkit_error ("base-cache-size=%s: not a size (e.g. 4G)", value);
      return -1;
    }
    return 0;
  }
  nbdkit_error ("unknown parameter '%s' (see nbdkit cowbd --help)", key);
  return -1;
}

static int
cowbd_config_complete (void)
{
  if (file && dir) {
    nbdkit_error ("file= and dir= cannot be used together");
    return -1;
  }
  if (!file && !dir && nclones == 0) {
    nbdkit_error ("an image (file=IMAGE) or a directory (dir=DIR) is "
                  "required (or clones: clone-from=BASE clone-dir=DIR)");
    return -1;
  }
  if (nclones && file) {
    nbdkit_error ("clone-from= cannot be used with file= (which serves "
                  "one image under every name): use dir= or neither");
    return -1;
  }
  if (nclones && clone_dir == NULL) {
    nbdkit_error ("clone-from= needs clone-dir=DIR");
    return -1;
  }
  return 0;
}

/* The engine's warnings (e.g. that probing guessed raw) are debug
 * messages: nbdkit has no warning level, and they are no error. */
static void
engine_warning (const char *msg)
{
  nbdkit_debug ("warning: %s", msg);
}

/* The engine's alerts (a repair at open, an image marked corrupt) must
 * be seen without -v: nbdkit has no level between debug and error. */
static void
engine_alert (const char *msg)
{
  nbdkit_error ("warning: %s", msg);
}

static int
cowbd_get_ready (void)
{
  struct exports_config c = {
    .file = file, .dir = dir, .format = format, .cache_size = cache_size,
    .clone_tmpl = (const char *const *) clone_tmpl,
    .clone_base = (const char *const *) clone_base,
    .nclones = nclones, .clone_dir = clone_dir,
    .max_exports = (size_t) max_exports,
    .backing_dirs = (const char *const *) backing_dirs,
    .remote_timeout_ms = remote_timeout_ms,
    .base_cache_dir = base_cache_dir, .base_cache_size = base_cache_size,
  };

  image_set_warn (engine_warning);
  image_set_alert (engine_alert);
  return exports_init (&c);
}

static void
cowbd_cleanup (void)
{
  exports_close_all ();
}

static void
cowbd_unload (void)
{
  size_t i;

  stats_unload ();
  exports_close_all ();         /* if cleanup was never reached */
  free (file);
  free (dir);
  free (clone_dir);
  for (i = 0; i < nclones; i++) {
    free (clone_tmpl[i]);
    free (clone_base[i]);
  }
  free (clone_tmpl);
  free (clone_base);
  for (i = 0; i < nbacking_dirs; i++)
    free (backing_dirs[i]);
  free (backing_dirs);
  free (base_cache_dir);
}

static void
cowbd_dump_plugin (void)
{
  printf ("cowbd_version=%s\n", PACKAGE_VERSION);
  printf ("cowbd_formats=%s\n", IMAGE_FORMATS);
}

#define cowbd_config_help \
  "[file=]IMAGE          The image to serve (raw, QED or qcow2).\n" \
  "dir=DIR               Serve every image in DIR, named by its file name.\n" \
  "format=auto|raw|qed|qcow2\n" \
  "                      The image format (default: probe the file;\n" \
  "                      a probed raw image refuses header writes).\n" \
  "cache-size=SIZE       Metadata cache per image (default: 32M).\n" \
  "clone-from=[TEMPLATE=]BASE\n" \
  "                      An unknown export NAME (or TEMPLATE/NAME) becomes\n" \
  "                      a new qcow2 overlay of BASE (repeatable).\n" \
  "clone-dir=DIR         Where those overlays live (DIR/NAME.qcow2).\n" \
  "max-exports=N         Cap on exports, clones included (default: none).\n" \
  "backing-dir=DIR       Backing files must resolve inside DIR (may be\n" \
  "                      repeated; default: dir= confines its images'\n" \
  "                      backing files to DIR, file= is trusted).\n" \
  "remote-timeout=SECONDS\n" \
  "                      A read of a remote (nbd://) backing image fails\n" \
  "                      with EIO after this long (default: 10).\n" \
  "base-cache=DIR        Keep what is read of remote backing images in DIR.\n" \
  "base-cache-size=SIZE  Bound on that cache (default: none)."

/* ---- exports and connections --------------------------------------------- */

struct handle {
  struct image *img;
  struct registry_export *exp;  /* a reference, given back at close */
  bool readonly;                /* this connection may not write */
  struct conn_stats st;         /* with -D cowbd.stats=1 */
};

static int
cowbd_list_exports (int readonly, int is_tls, struct nbdkit_exports *list)
{
  return exports_list (list);
}

static const char *
cowbd_default_export (int readonly, int is_tls)
{
  return exports_default ();
}

static void *
cowbd_open (int readonly)
{
  const char *name = nbdkit_export_name ();
  struct registry_export *exp;
  struct handle *h;

  if (name == NULL)
    return NULL;
  h = calloc (1, sizeof *h);
  if (h == NULL) {
    nbdkit_error ("malloc: %m");
    return NULL;
  }
  exp = exports_get (name, readonly);
  if (exp == NULL) {
    free (h);
    return NULL;
  }
  h->img = registry_export_image (exp);
  h->exp = exp;
  h->readonly = readonly || registry_export_readonly (exp);
  if (!readonly && h->readonly)
    nbdkit_debug ("export '%s' is read-only", registry_export_name (exp));
  return h;
}

static void
cowbd_close (void *handle)
{
  struct handle *h = handle;

  stats_close (registry_export_name (h->exp), &h->st, h->img);
  exports_put (h->exp);         /* the image stays open for the others */
  free (h);
}

static const char *
cowbd_export_description (void *handle)
{
  struct handle *h = handle;

  return registry_export_description (h->exp);
}

static int64_t
cowbd_get_size (void *handle)
{
  struct handle *h = handle;

  return (int64_t) image_size (h->img);
}

static int
cowbd_block_size (void *handle, uint32_t *minimum, uint32_t *preferred,
                  uint32_t *maximum)
{
  struct handle *h = handle;
  struct image_info info;

  image_get_info (h->img, &info);
  *minimum = BLOCK_MINIMUM;
  *preferred = info.cluster_size
    ? MIN (MAX (info.cluster_size, (uint32_t) BLOCK_PREFERRED_RAW),
           BLOCK_MAXIMUM)
    : BLOCK_PREFERRED_RAW;
  *maximum = BLOCK_MAXIMUM;
  return 0;
}

static int
cowbd_can_write (void *handle)
{
  struct handle *h = handle;

  return !h->readonly;
}

static int
cowbd_true (void *handle)
{
  return 1;
}

static int
cowbd_can_fua (void *handle)
{
  return NBDKIT_FUA_NATIVE;
}

static int
cowbd_can_cache (void *handle)
{
  return NBDKIT_CACHE_NATIVE;
}

/* ---- data ---------------------------------------------------------------- */

static int
cowbd_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
             uint32_t flags)
{
  struct handle *h = handle;

  return stats_count (&h->st, ST_READ, count,
                      image_pread (h->img, buf, count, offset) == -1 ?
                      engine_error () : 0);
}

static unsigned
fua_flag (uint32_t flags)
{
  return (flags & NBDKIT_FLAG_FUA) ? IMAGE_FUA : 0;
}

static int
cowbd_pwrite (void *handle, const void *buf, uint32_t count, uint64_t offset,
              uint32_t flags)
{
  struct handle *h = handle;

  if (image_pwrite (h->img, buf, count, offset, fua_flag (flags)) == -1)
    return stats_count (&h->st, ST_WRITE, count, engine_error ());
  return stats_count (&h->st, ST_WRITE, count, 0);
}

static int
cowbd_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  struct handle *h = handle;
  unsigned f = fua_flag (flags);

  if (flags & NBDKIT_FLAG_MAY_TRIM)
    f |= IMAGE_MAY_TRIM;
  if (flags & NBDKIT_FLAG_FAST_ZERO)
    f |= IMAGE_FAST_ZERO;
  if (image_zero (h->img, count, offset, f) == 0)
    return stats_count (&h->st, ST_ZERO, count, 0);
  if ((f & IMAGE_FAST_ZERO) && image_errno () == ENOTSUP) {
    nbdkit_debug ("%s", image_error ());
    nbdkit_set_error (ENOTSUP);
    return stats_count (&h->st, ST_ZERO, count, -1);
  }
  return stats_count (&h->st, ST_ZERO, count, engine_error ());
}

static int
cowbd_trim (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  struct handle *h = handle;

  if (image_trim (h->img, count, offset, fua_flag (flags)) == -1)
    return stats_count (&h->st, ST_TRIM, count, engine_error ());
  return stats_count (&h->st, ST_TRIM, count, 0);
}

static int
cowbd_flush (void *handle, uint32_t flags)
{
  struct handle *h = handle;

  return stats_count (&h->st, ST_FLUSH, 0,
                      image_flush (h->img) == -1 ? engine_error () : 0);
}

static int
cowbd_cache (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  struct handle *h = handle;

  if (flags != 0) {
    nbdkit_error ("cache: unknown flags 0x%x", flags);
    nbdkit_set_error (EINVAL);
    return -1;
  }
  return stats_count (&h->st, ST_CACHE, count,
                      image_cache (h->img, count, offset) == -1 ?
                      engine_error () : 0);
}

/* ---- extents ------------------------------------------------------------- */

struct extents_ctx {
  struct nbdkit_extents *list;
  unsigned n;
  int err;                      /* nbdkit_add_extent failed with this */
};

/* The engine's extent as NBD base:allocation sees it: data, a hole, or
 * allocated zeros (an allocated cluster over a hole of the host file). */
static uint32_t
extent_type (unsigned flags)
{
  if (!(flags & IMAGE_EXTENT_DATA))
    return NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO;
  if (flags & IMAGE_EXTENT_ZERO)
    return NBDKIT_EXTENT_ZERO;
  return 0;
}

static int
add_extent (void *opaque, const struct image_extent *e)
{
  struct extents_ctx *ctx = opaque;

  if (nbdkit_add_extent (ctx->list, e->offset, e->length,
                         extent_type (e->flags)) == -1) {
    ctx->err = errno ? errno : EIO;
    return -1;
  }
  return ++ctx->n >= MAX_EXTENTS;  /* 1 stops the walk */
}

static int
cowbd_extents (void *handle, uint32_t count, uint64_t offset, uint32_t flags,
               struct nbdkit_extents *list)
{
  struct handle *h = handle;
  struct extents_ctx ctx = { .list = list };
  unsigned f = (flags & NBDKIT_FLAG_REQ_ONE) ? IMAGE_EXTENTS_ONE : 0;

  if (image_extents (h->img, count, offset, f, add_extent, &ctx) == -1) {
    if (ctx.err) {              /* nbdkit_add_extent said why */
      nbdkit_set_error (ctx.err);
      return stats_count (&h->st, ST_EXTENTS, count, -1);
    }
    return stats_count (&h->st, ST_EXTENTS, count, engine_error ());
  }
  return stats_count (&h->st, ST_EXTENTS, count, 0);
}

/* ---- registration ---------------------------------------------------------- */

static struct nbdkit_plugin plugin = {
  .name = "cowbd",
  .longname = "cowbd copy-on-write image plugin",
  .version = PACKAGE_VERSION,
  .description =
    "Serves raw, QED and qcow2 disk images, overlays with their backing\n"
    "chain, through the cowbd format engine.",
  .unload = cowbd_unload,
  .config = cowbd_config,
  .config_complete = cowbd_config_complete,
  .config_help = cowbd_config_help,
  .magic_config_key = "file",
  .dump_plugin = cowbd_dump_plugin,
  .get_ready = cowbd_get_ready,
  .cleanup = cowbd_cleanup,
  .list_exports = cowbd_list_exports,
  .default_export = cowbd_default_export,
  .open = cowbd_open,
  .close = cowbd_close,
  .export_description = cowbd_export_description,
  .get_size = cowbd_get_size,
  .block_size = cowbd_block_size,
  .can_write = cowbd_can_write,
  .can_flush = cowbd_true,
  .can_trim = cowbd_true,
  .can_zero = cowbd_true,
  .can_fast_zero = cowbd_true,
  .can_extents = cowbd_true,
  .can_multi_conn = cowbd_true,
  .can_fua = cowbd_can_fua,
  .can_cache = cowbd_can_cache,
  .pread = cowbd_pread,
  .pwrite = cowbd_pwrite,
  .zero = cowbd_zero,
  .trim = cowbd_trim,
  .flush = cowbd_flush,
  .extents = cowbd_extents,
  .cache = cowbd_cache,
};

NBDKIT_REGISTER_PLUGIN (plugin)
