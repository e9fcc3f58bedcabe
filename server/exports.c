/* SPDX-License-Identifier: BSD-3-Clause */
/* The server's side of the export registry (exports/registry.h).
 *
 * `cowbd [NAME=]IMAGE... [dir=DIR]`: each IMAGE argument is an export,
 * named NAME or, without NAME=, after its file's base name; dir=DIR
 * serves every image of DIR by its file name (as the plugin's dir=).
 * The first export is also the default: the empty name is an alias of
 * it (listed once, under its own name).
 *
 * The registry shares one engine image per host file (aliases, backing
 * files), opens an export's image for its first connection and closes
 * it a little after the last one: clients find exports through
 * export_get at each handshake, which may open an image and so runs on
 * a worker thread, never on the loop (handshake.c).  A connection holds
 * its export (a registry reference) until it is freed.
 *
 * At start-up every command-line image is opened once as it will be
 * served, in a registry of its own that is gone before the server forks
 * or serves, so that a bad image stops the server with its message.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"
#include "minmax.h"
#include "nbd-protocol.h"

/* The command line's exports, in order. */
struct arg {
  char *name;                   /* NULL for dir= */
  char *path;
};
static struct arg *args;
static size_t nargs;
static bool have_dir;

static struct registry *registry;

/* --clone-from, --clone-dir, --max-exports. */
struct clone_arg {
  char *tmpl;                   /* NULL: the default base */
  char *base;
};
static struct clone_arg *clones;
static size_t nclones;
static const char *clone_dir;
static size_t max_exports;

/* The stats table: loop thread only. */
struct export_entry {
  struct export view;           /* name (owned) and stats, for metrics.c */
  unsigned conns;               /* connections serving it now */
  struct image *img;            /* held by one of them, NULL if none */
  struct image_stats last;      /* figures when the last one left */
};
static struct export_entry **entries;
static size_t nentries;

static bool
name_taken (const char *name)
{
  size_t i;

  for (i = 0; i < nargs; i++)
    if (args[i].name && strcmp (args[i].name, name) == 0)
      return true;
  return false;
}

/* Splits "NAME=IMAGE"; a prefix holding a '/' is part of a file name.
 * "dir=DIR" gives *name NULL. */
static int
split_arg (const char *arg, char **name, char **filename)
{
  const char *eq = strchr (arg, '=');
  const char *base;

  *name = NULL;
  if (strncmp (arg, "dir=", 4) == 0)
    *filename = strdup (arg + 4);
  else if (eq && eq > arg && memchr (arg, '/', (size_t) (eq - arg)) == NULL) {
    *name = strndup (arg, (size_t) (eq - arg));
    *filename = strdup (eq + 1);
  }
  else {
    base = strrchr (arg, '/');
    *name = strdup (base ? base + 1 : arg);
    *filename = strdup (arg);
  }
  if ((*name == NULL && strncmp (arg, "dir=", 4) != 0) || *filename == NULL) {
    free (*name);
    free (*filename);
    log_error ("out of memory");
    return -1;
  }
  return 0;
}

static const char *
arg_problem (const char *name, const char *filename)
{
  if (filename[0] == '\0')
    return name ? "no image file named" : "no directory named";
  if (name == NULL)
    return have_dir ? "dir= given twice" : NULL;
  if (name[0] == '\0')
    return "no export name (name it: NAME=IMAGE)";
  if (name_taken (name))
    return "export name used twice (name the exports: NAME=IMAGE)";
  if (strlen (name) > NBD_MAX_STRING)
    return "export name longer than 4096 bytes";
  return NULL;
}

int
exports_add (const char *arg)
{
  struct arg *a;
  const char *why;
  char *name, *filename;

  if (split_arg (arg, &name, &filename) == -1)
    return -1;
  if ((why = arg_problem (name, filename)) != NULL) {
    log_error ("%s: %s", arg, why);
    free (name);
    free (filename);
    return -1;
  }
  a = realloc (args, (nargs + 1) * sizeof *args);
  if (a == NULL) {
    free (name);
    free (filename);
    log_error ("out of memory");
    return -1;
  }
  args = a;
  args[nargs++] = (struct arg) { .name = name, .path = filename };
  have_dir |= name == NULL;
  return 0;
}

int
exports_clone_from (const char *arg)
{
  struct clone_arg *v = NULL, a = { NULL, NULL };
  size_t tlen;
  const char *base = registry_clone_from_split (arg, &tlen);
  bool named = tlen > 0;

  if (named)
    a.tmpl = strndup (arg, tlen);
  a.base = strdup (base);
  if (a.base == NULL || (named && a.tmpl == NULL) ||
      (v = realloc (clones, (nclones + 1) * sizeof *v)) == NULL) {
    free (a.tmpl);
    free (a.base);
    log_error ("out of memory");
    return -1;
  }
  clones = v;
  clones[nclones++] = a;
  return 0;
}

void
exports_clone_dir (const char *dir)
{
  clone_dir = dir;
}

void
exports_max (size_t n)
{
  max_exports = n;
}

size_t
exports_nclones (void)
{
  return nclones;
}

struct registry *
exports_registry (void)
{
  return registry;
}

/* The clone bases and folder into r. */
static int
add_clones (struct registry *r)
{
  size_t i;

  for (i = 0; i < nclones; i++)
    if (registry_clone_base (r, clones[i].tmpl, clones[i].base) == -1)
      return -1;
  if (clone_dir && registry_clone_dir (r, clone_dir) == -1)
    return -1;
  return 0;
}

/* ---- start-up ------------------------------------------------------------ */

/* An image that opens read-only but not for writing (permissions, a
 * read-only file system, a feature the engine only reads) is an error
 * without -r: serving it read-only behind the user's back would make
 * every guest write fail.  Says which and how to serve it anyway. */
static void
report_open_error (const char *path)
{
  struct image_open_opts ro = {
    .format = cfg.format, .flags = IMAGE_OPEN_READONLY,
    .backing_dirs = cfg.backing_dirs,
  };
  char *rw_error;
  int err = image_errno ();
  struct image *img;

  if (cfg.readonly || (err != EACCES && err != EROFS && err != EPERM)) {
    log_error ("%s", image_error ());
    return;
  }
  rw_error = strdup (image_error ());
  img = image_open (path, &ro);
  if (img == NULL)
    log_error ("%s", image_error ());
  else {
    log_error ("%s (cannot open it for writing: add -r to serve it "
               "read-only)", rw_error ? rw_error : path);
    image_close (img);
  }
  free (rw_error);
}

static void
debug (const char *msg)
{
  log_verbose ("%s", msg);
}

/* Puts one command-line argument into r; with_dir false: dir= is only
 * checked to be a directory. */
static int
add_arg (struct registry *r, const struct arg *a, bool with_dir)
{
  struct stat st;

  if (a->name)
    return registry_add (r, a->name, a->path);
  if (with_dir)
    return registry_set_dir (r, a->path);
  if (stat (a->path, &st) == -1) {
    image_set_error (errno, "dir=%s: %s", a->path, strerror (errno));
    return -1;
  }
  if (!S_ISDIR (st.st_mode)) {
    image_set_error (ENOTDIR, "dir=%s: not a directory", a->path);
    return -1;
  }
  return 0;
}

/* A registry holding every command-line export (with_dir: and the
 * directory's); NULL after saying why. */
static struct registry *
build (bool with_dir)
{
  struct registry_config rc = {
    .format = cfg.format,
    .cache_size = cfg.cache_size,
    .remote_timeout_ms = cfg.remote_timeout_ms,
    .base_cache_dir = cfg.base_cache_dir,
    .base_cache_size = cfg.base_cache_size,
    .readonly = cfg.readonly,
    .describe_readonly = true,
    .debug = debug,
    .max_exports = max_exports,
    .backing_dirs = cfg.backing_dirs,
  };
  struct registry *r = registry_new (&rc);
  size_t i;

  if (r == NULL) {
    log_error ("%s", image_error ());
    return NULL;
  }
  for (i = 0; i < nargs; i++)
    if (add_arg (r, &args[i], with_dir) == -1) {
      log_error ("%s", image_error ());
      registry_free (r);
      return NULL;
    }
  if (with_dir && add_clones (r) == -1) {
    log_error ("%s", image_error ());
    registry_free (r);
    return NULL;
  }
  return r;
}

/* Opens every command-line image as it will be served. */
static int
validate (void)
{
  struct registry *r = build (false);
  size_t i;
  int ret = 0;

  if (r == NULL)
    return -1;
  for (i = 0; i < nargs && ret == 0; i++) {
    struct registry_export *e;
    if (args[i].name == NULL)
      continue;
    e = registry_get (r, args[i].name, strlen (args[i].name), false);
    if (e == NULL) {
      report_open_error (args[i].path);
      ret = -1;
    }
    else if (registry_export_size (e) > INT64_MAX) {
      log_error ("%s: image size %" PRIu64 " is too large for NBD",
                 args[i].path, registry_export_size (e));
      ret = -1;
    }
    if (e)
      registry_put (e);
  }
  if (registry_free (r) == -1) {
    log_error ("%s", image_error ());
    ret = -1;
  }
  /* What those opens freed lies in the heap below what stays allocated,
   * where free() keeps it: about 90 KiB per qcow2 image (a header
   * cluster, tables, caches), 9.8 MiB resident for 100 exports before
   * the first client.  Given back to the kernel once, here. */
  malloc_trim (0);
  return ret;
}

/* ---- the stats table (loop thread) ---------------------------------------- */

static struct export_entry *
entry_find (const char *name)
{
  size_t i;

  for (i = 0; i < nentries; i++)
    if (strcmp (entries[i]->view.name, name) == 0)
      return entries[i];
  return NULL;
}

/* Finds or creates the entry of name; NULL on ENOMEM. */
static struct export_entry *
entry_get (const char *name)
{
  struct export_entry *en = entry_find (name), **a;

  if (en)
    return en;
  a = realloc (entries, (nentries + 1) * sizeof *entries);
  if (a == NULL)
    return NULL;
  entries = a;
  en = calloc (1, sizeof *en);
  if (en == NULL)
    return NULL;
  en->view.name = strdup (name);
  en->view.stats = metrics_export_new ();
  if (en->view.name == NULL || en->view.stats == NULL) {
    free ((char *) en->view.name);
    metrics_export_free (en->view.stats);
    free (en);
    return NULL;
  }
  entries[nentries++] = en;
  notify_changed ();
  return en;
}

static void
entries_free (void)
{
  size_t i;

  for (i = 0; i < nentries; i++) {
    free ((char *) entries[i]->view.name);
    metrics_export_free (entries[i]->view.stats);
    free (entries[i]);
  }
  free (entries);
  entries = NULL;
  nentries = 0;
}

int
export_stats_attach (struct export *exp)
{
  struct export_entry *en = entry_get (exp->name);

  if (en == NULL) {
    image_set_error (ENOMEM, "out of memory");
    return -1;
  }
  exp->entry = en;
  exp->stats = en->view.stats;
  return 0;
}

void
export_stats_conn (const struct export *exp, int delta)
{
  struct export_entry *en = exp->entry;

  if (delta > 0) {
    en->conns++;
    en->img = exp->img;
  }
  else if (--en->conns == 0) {
    /* The connection still holds the image until it is freed. */
    image_get_stats (en->img, &en->last);
    en->img = NULL;
  }
}

size_t
exports_count (void)
{
  return nentries;
}

const struct export *
exports_at (size_t i)
{
  return &entries[i]->view;
}

void
exports_engine_stats (size_t i, struct image_stats *st)
{
  struct export_entry *en = entries[i];

  if (en->img)
    image_get_stats (en->img, st);
  else
    *st = en->last;
}

int
exports_open (void)
{
  size_t i;

  if (validate () == -1)
    return -1;
  registry = build (true);
  if (registry == NULL)
    return -1;
  for (i = 0; i < nargs; i++)
    if (args[i].name && entry_get (args[i].name) == NULL) {
      log_error ("out of memory");
      return -1;
    }
  return 0;
}

int
exports_close (void)
{
  size_t i;
  int r = registry_free (registry);

  if (r == -1)
    log_error ("closing: %s", image_error ());
  registry = NULL;
  entries_free ();
  for (i = 0; i < nargs; i++) {
    free (args[i].name);
    free (args[i].path);
  }
  free (args);
  args = NULL;
  nargs = 0;
  for (i = 0; i < nclones; i++) {
    free (clones[i].tmpl);
    free (clones[i].base);
  }
  free (clones);
  clones = NULL;
  nclones = 0;
  return r;
}

const char *
exports_default_name (void)
{
  return nargs && args[0].name ? args[0].name : "";
}

static uint32_t
preferred_block (uint32_t cluster_size)
{
  /* A cluster is the natural unit of I/O on an overlay; clamp it to
   * what the protocol allows a preferred size to be. */
  return MIN (MAX (cluster_size, 4096u), 2u << 20);
}

/* ---- lookups (worker threads) ----------------------------------------------- */

struct export *
export_get (const char *name, size_t len)
{
  struct export *e = calloc (1, sizeof *e);
  struct image_info info;

  if (e == NULL) {
    image_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  e->ref = registry_get (registry, name, len, cfg.readonly);
  if (e->ref == NULL) {
    free (e);
    return NULL;
  }
  e->name = registry_export_name (e->ref);
  e->description = registry_export_description (e->ref);
  e->img = registry_export_image (e->ref);
  e->size = image_size (e->img);
  e->readonly = registry_export_readonly (e->ref);
  image_get_info (e->img, &info);
  e->preferred_block = preferred_block (info.cluster_size);
  return e;
}

struct export *
export_info (const char *name, size_t len)
{
  struct export *e = calloc (1, sizeof *e);

  if (e == NULL) {
    image_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  if (registry_info (registry, name, len, &e->info) == -1) {
    free (e);
    return NULL;
  }
  e->name = e->info.name;
  e->description = e->info.description;
  e->size = e->info.size;
  e->readonly = e->info.readonly;
  e->preferred_block = preferred_block (e->info.cluster_size);
  return e;
}

void
export_release (struct export *e)
{
  if (e) {
    if (e->ref)
      registry_put (e->ref);
    registry_info_free (&e->info);
    free (e);
  }
}

bool
export_exists (const char *name, size_t len)
{
  return registry_exists (registry, name, len);
}

int
exports_list (registry_list_fn fn, void *opaque)
{
  return registry_list (registry, fn, opaque);
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
