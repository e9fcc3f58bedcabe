/* SPDX-License-Identifier: BSD-3-Clause */
/* The export table and the references connections hold (registry.h).
 *
 * An export's life:
 *
 *   registry_add / a scan --> in the table, idle (no file)
 *   registry_get          --> refs++; the first opens its file (files.c)
 *   registry_put          --> refs--; the last lets the file go idle
 *   registry_remove / a scan that no longer finds it
 *                         --> out of the table; freed at refs == 0
 */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "internal.h"

void
reg_debug (struct registry *r, const char *fmt, ...)
{
  char msg[1024];
  va_list ap;

  if (r->cfg.debug == NULL)
    return;
  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  r->cfg.debug (msg);
}

void
reg_warn (struct registry *r, const char *fmt, ...)
{
  void (*fn) (const char *) = r->cfg.warn ? r->cfg.warn : r->cfg.debug;
  char msg[1024];
  va_list ap;

  if (fn == NULL)
    return;
  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  fn (msg);
}

void
reg_export_free (struct registry_export *e)
{
  if (e == NULL)
    return;
  free (e->name);
  free (e->path);
  free (e->desc);
  free (e->desc_full);
  free (e->format);
  free (e->fmt_name);
  free (e->backing_path);
  free (e);
}

static void
vector_remove (struct registry_export **v, size_t *n,
               struct registry_export *e)
{
  size_t i;

  for (i = 0; i < *n; i++)
    if (v[i] == e) {
      memmove (&v[i], &v[i + 1], (*n - i - 1) * sizeof *v);
      (*n)--;
      return;
    }
}

void
reg_export_unlink (struct registry *r, struct registry_export *e)
{
  names_remove (&r->names, e);
  vector_remove (r->fixed, &r->nfixed, e);
  vector_remove (r->dirv, &r->ndir, e);
  e->removed = true;
  reg_debug (r, "export '%s' removed", e->name);
  if (e->refs == 0)
    reg_export_free (e);
}

static bool
names_backing (const struct registry_export *e,
               const struct image_file_id *id)
{
  return e->has_backing && !e->removed &&
    image_file_id_equal (&e->backing_id, id);
}

bool
reg_is_known_backing (struct registry *r, const struct image_file_id *id)
{
  size_t i;

  if (clone_is_base (r, id))
    return true;
  for (i = 0; i < r->nfixed; i++)
    if (names_backing (r->fixed[i], id))
      return true;
  for (i = 0; i < r->ndir; i++)
    if (!r->dirv[i]->bad && names_backing (r->dirv[i], id))
      return true;
  return false;
}

/* ---- life ------------------------------------------------------------------ */

struct registry *
registry_new (const struct registry_config *cfg)
{
  struct registry *r = calloc (1, sizeof *r);
  pthread_condattr_t ca;

  if (r == NULL) {
    image_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  r->cfg = *cfg;
  if (r->cfg.idle_ms == 0)
    r->cfg.idle_ms = REGISTRY_IDLE_MS;
  pthread_mutex_init (&r->lock, NULL);
  pthread_mutex_init (&r->open_lock, NULL);
  pthread_condattr_init (&ca);
  pthread_condattr_setclock (&ca, CLOCK_MONOTONIC);
  pthread_cond_init (&r->cond, &ca);
  pthread_condattr_destroy (&ca);
  r->cache.get = files_cache_get;
  r->cache.put = files_cache_put;
  r->cache.opaque = r;
  return r;
}

const char *const *
reg_backing_dirs (const struct registry *r, const struct registry_export *e)
{
  if (e->clone && !e->trusted)
    return (const char *const *) r->clone_confine;
  if (e->from_dir)
    return r->dir_dirs;
  return r->cfg.backing_dirs;
}

/* { dir, cfg.backing_dirs..., NULL }, or NULL on ENOMEM. */
static const char **
make_dir_dirs (const struct registry *r, const char *dir)
{
  size_t n = 0, i;
  const char **v;

  while (r->cfg.backing_dirs && r->cfg.backing_dirs[n])
    n++;
  v = calloc (n + 2, sizeof *v);
  if (v == NULL)
    return NULL;
  v[0] = dir;
  for (i = 0; i < n; i++)
    v[i + 1] = r->cfg.backing_dirs[i];
  return v;
}

int
registry_free (struct registry *r)
{
  size_t i;
  int ret;

  if (r == NULL)
    return 0;
  /* Connections left (a shutdown that gave up waiting) let go. */
  pthread_mutex_lock (&r->lock);
  for (i = 0; i < r->names.nb; i++) {
    struct registry_export *e;
    for (e = r->names.b[i]; e; e = e->hnext)
      if (e->file) {
        files_release (r, e->file, false);
        e->file = NULL;
      }
  }
  pthread_mutex_unlock (&r->lock);
  ret = files_close_all (r);
  if (r->close_error) {
    image_set_error (EIO, "%s", r->close_error);
    free (r->close_error);
    ret = -1;
  }
  for (i = 0; i < r->names.nb; i++) {
    struct registry_export *e, *next;
    for (e = r->names.b[i]; e; e = next) {
      next = e->hnext;
      reg_export_free (e);
    }
  }
  free (r->names.b);
  free (r->fixed);
  free (r->dirv);
  free (r->dir);
  clone_free_all (r);
  free (r->dir_dirs);
  pthread_cond_destroy (&r->cond);
  pthread_mutex_destroy (&r->lock);
  pthread_mutex_destroy (&r->open_lock);
  free (r);
  return ret;
}

/* ---- the table --------------------------------------------------------------- */

static int
fixed_push (struct registry *r, struct registry_export *e)
{
  if (r->nfixed == r->cap_fixed) {
    size_t cap = r->cap_fixed ? r->cap_fixed * 2 : 16;
    struct registry_export **v = realloc (r->fixed, cap * sizeof *v);
    if (v == NULL) {
      image_set_error (ENOMEM, "out of memory");
      return -1;
    }
    r->fixed = v;
    r->cap_fixed = cap;
  }
  r->fixed[r->nfixed++] = e;
  return 0;
}

/* The exports --max-exports counts (lock held). */
static size_t
count_locked (struct registry *r)
{
  size_t n = r->nfixed + r->pending_clones, i;

  for (i = 0; i < r->ndir; i++)
    n += !r->dirv[i]->bad;
  return n;
}

static struct registry_export *
export_new (struct registry *r, const char *name, const char *path,
            const struct registry_add_opts *o, bool clone)
{
  struct registry_export *e = calloc (1, sizeof *e);

  if (e == NULL || (e->name = strdup (name)) == NULL ||
      (e->path = strdup (path)) == NULL ||
      (o && o->format && (e->format = strdup (o->format)) == NULL)) {
    reg_export_free (e);
    image_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  e->reg = r;
  e->clone = clone;
  e->force_ro = o && o->readonly;
  e->trusted = o && o->trusted;
  return e;
}

/* Puts e into the table (lock held); frees it on failure. */
static int
insert (struct registry *r, struct registry_export *e, bool clone)
{
  if (names_find (&r->names, e->name, strlen (e->name))) {
    image_set_error (EEXIST, "export name '%s' is taken", e->name);
    reg_export_free (e);
    return -1;
  }
  /* A clone's place was reserved when its creation started. */
  if (!clone && r->cfg.max_exports &&
      count_locked (r) >= r->cfg.max_exports) {
    image_set_error (ENOSPC, "export '%s': the limit of %zu exports "
                     "is reached", e->name, r->cfg.max_exports);
    reg_export_free (e);
    return -1;
  }
  if (names_insert (&r->names, e) == -1 || fixed_push (r, e) == -1) {
    names_remove (&r->names, e);
    reg_export_free (e);
    return -1;
  }
  return 0;
}

int
reg_add (struct registry *r, const char *name, const char *path,
         const struct registry_add_opts *o, bool clone)
{
  struct registry_export *e;

  if (strlen (name) > REG_MAX_NAME) {
    image_set_error (ENAMETOOLONG, "export name longer than %d bytes",
                     REG_MAX_NAME);
    return -1;
  }
  e = export_new (r, name, path, o, clone);
  if (e == NULL)
    return -1;
  if (scan_peek (r, e) == -1) {
    reg_export_free (e);
    return -1;
  }
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&r->lock);
  return insert (r, e, clone);
}

int
reg_add_made (struct registry *r, const char *name, const char *path,
              const struct registry_add_opts *o, const struct clone_base *b)
{
  struct registry_export *e = export_new (r, name, path, o, true);

  if (e == NULL)
    return -1;
  if (scan_fill_made (e, o->format, b->size, b->path, &b->id) == -1) {
    reg_export_free (e);
    return -1;
  }
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&r->lock);
  return insert (r, e, true);
}

int
registry_add_with (struct registry *r, const char *name, const char *path,
                   const struct registry_add_opts *o)
{
  return reg_add (r, name, path, o, false);
}

int
registry_add (struct registry *r, const char *name, const char *path)
{
  return reg_add (r, name, path, NULL, false);
}

int
registry_set_dir (struct registry *r, const char *dir)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&r->lock);

  free (r->dir);
  free (r->dir_dirs);
  r->dir = strdup (dir);
  r->dir_dirs = r->dir ? make_dir_dirs (r, r->dir) : NULL;
  if (r->dir == NULL || r->dir_dirs == NULL) {
    image_set_error (ENOMEM, "out of memory");
    return -1;
  }
  r->dir_mtime_ns = -1;
  return scan_dir (r, true);
}

int
registry_remove (struct registry *r, const char *name,
                 enum registry_remove_mode mode)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&r->lock);
  struct registry_export *e = names_find (&r->names, name, strlen (name));

  if (e == NULL) {
    image_set_error (ENOENT, "no export named '%s'", name);
    return -1;
  }
  if (mode == REGISTRY_REMOVE_SAFE && e->refs > 0) {
    image_set_error (EBUSY, "export '%s' is in use (%u connection(s))",
                     name, e->refs);
    return -1;
  }
  reg_export_unlink (r, e);
  return 0;
}

size_t
registry_count (struct registry *r)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&r->lock);

  return count_locked (r) - r->pending_clones;
}

/* The description LIST shows (lock held), in buf. */
static const char *
list_description (struct registry *r, struct registry_export *e,
                  char *buf, size_t len)
{
  bool ro;

  if (e->desc == NULL)
    return "";
  ro = e->file ? e->readonly
       : r->cfg.readonly || e->force_ro || reg_is_known_backing (r, &e->id);
  if (!r->cfg.describe_readonly || !ro)
    return e->desc;
  snprintf (buf, len, "%s, read-only", e->desc);
  return buf;
}

int
registry_list (struct registry *r, registry_list_fn fn, void *opaque)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&r->lock);
  char buf[REG_MAX_NAME + 16];
  size_t i;
  int ret = 0;

  if (r->dir && scan_dir (r, true) == -1)
    return -1;
  for (i = 0; i < r->nfixed && ret == 0; i++)
    ret = fn (opaque, r->fixed[i]->name,
              list_description (r, r->fixed[i], buf, sizeof buf));
  for (i = 0; i < r->ndir && ret == 0; i++)
    if (!r->dirv[i]->bad)
      ret = fn (opaque, r->dirv[i]->name,
                list_description (r, r->dirv[i], buf, sizeof buf));
  return ret;
}

/* The export a client means (lock held), or NULL. */
static struct registry_export *
lookup (struct registry *r, const char *name, size_t len)
{
  struct registry_export *e = names_find (&r->names, name, len);
  size_t i;

  if (e && !e->bad)
    return e;
  if (len == 0) {
    /* The first export that is not a clone made on demand. */
    for (i = 0; i < r->nfixed; i++)
      if (!r->fixed[i]->clone)
        return r->fixed[i];
    if (r->dir)
      scan_dir (r, false);
    for (i = 0; i < r->ndir; i++)
      if (!r->dirv[i]->bad)
        return r->dirv[i];
    return NULL;
  }
  return r->dir ? scan_dir_lookup (r, name, len) : NULL;
}

char *
registry_default (struct registry *r)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&r->lock);
  struct registry_export *e = lookup (r, "", 0);
  char *s;

  if (e == NULL) {
    image_set_error (ENOENT, "no default export");
    return NULL;
  }
  s = strdup (e->name);
  if (s == NULL)
    image_set_error (ENOMEM, "out of memory");
  return s;
}

bool
reg_known (struct registry *r, const char *name, size_t len)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&r->lock);

  return lookup (r, name, len) != NULL;
}

bool
registry_exists (struct registry *r, const char *name, size_t len)
{
  if (clone_ensure (r, name, len) == -1)
    return false;
  return reg_known (r, name, len);
}

int
registry_info (struct registry *r, const char *name, size_t len,
               struct registry_info *info)
{
  memset (info, 0, sizeof *info);
  if (clone_ensure (r, name, len) == -1)
    return -1;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&r->lock);
  struct registry_export *e = lookup (r, name, len);
  char buf[REG_MAX_NAME + 16];

  if (e == NULL) {
    image_set_error (ENOENT, "no export named '%.*s'",
                     (int) (len > 256 ? 256 : len), name);
    return -1;
  }
  info->size = e->file ? image_size (e->file->img) : e->size;
  info->cluster_size = e->cluster_size;
  info->readonly = e->file ? e->readonly
    : r->cfg.readonly || e->force_ro || reg_is_known_backing (r, &e->id);
  info->name = strdup (e->name);
  info->description = strdup (list_description (r, e, buf, sizeof buf));
  if (info->name == NULL || info->description == NULL) {
    registry_info_free (info);
    image_set_error (ENOMEM, "out of memory");
    return -1;
  }
  return 0;
}

void
registry_info_free (struct registry_info *info)
{
  free (info->name);
  free (info->description);
  info->name = info->description = NULL;
}

/* ---- references ------------------------------------------------------------ */

/* "qcow2, 1 GiB, read-only" of an opened export (lock held). */
static void
describe_open (struct registry *r, struct registry_export *e)
{
  free (e->desc_full);
  e->desc_full = NULL;
  if (e->desc && e->readonly && r->cfg.describe_readonly &&
      asprintf (&e->desc_full, "%s, read-only", e->desc) == -1)
    e->desc_full = NULL;
}

/* Opens e's file if no one has yet (open_lock held, lock not held). */
static int
export_open (struct registry *r, struct registry_export *e, bool readonly)
{
  struct reg_file *f;

  pthread_mutex_lock (&r->lock);
  f = e->file;
  pthread_mutex_unlock (&r->lock);
  if (f)
    return 0;
  f = files_acquire (r, e->path, readonly || r->cfg.readonly || e->force_ro,
                     e->format ? e->format : r->cfg.format, false,
                     reg_backing_dirs (r, e));
  if (f == NULL)
    return -1;
  pthread_mutex_lock (&r->lock);
  e->file = f;
  e->readonly = image_is_readonly (f->img);
  describe_open (r, e);
  pthread_mutex_unlock (&r->lock);
  reg_debug (r, "export '%s': opened %s%s", e->name, e->path,
             e->readonly ? " read-only" : "");
  return 0;
}

struct registry_export *
registry_get (struct registry *r, const char *name, size_t len,
              bool readonly)
{
  struct registry_export *e;
  bool open;

  if (clone_ensure (r, name, len) == -1)
    return NULL;
  pthread_mutex_lock (&r->lock);
  e = lookup (r, name, len);
  if (e == NULL) {
    pthread_mutex_unlock (&r->lock);
    image_set_error (ENOENT, "no export named '%.*s'",
                     (int) (len > 256 ? 256 : len), name);
    return NULL;
  }
  e->refs++;
  open = e->file != NULL;
  pthread_mutex_unlock (&r->lock);
  if (open)
    return e;

  pthread_mutex_lock (&r->open_lock);
  if (export_open (r, e, readonly) == -1) {
    pthread_mutex_unlock (&r->open_lock);
    registry_put (e);
    return NULL;
  }
  pthread_mutex_unlock (&r->open_lock);
  return e;
}

void
registry_put (struct registry_export *e)
{
  struct registry *r = e->reg;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&r->lock);
  if (--e->refs > 0)
    return;
  if (e->file) {
    files_release (r, e->file, false);
    e->file = NULL;
  }
  if (e->removed)
    reg_export_free (e);
}

const char *
registry_export_name (const struct registry_export *e)
{
  return e->name;
}

struct image *
registry_export_image (const struct registry_export *e)
{
  return e->file->img;
}

uint64_t
registry_export_size (const struct registry_export *e)
{
  return image_size (e->file->img);
}

bool
registry_export_readonly (const struct registry_export *e)
{
  return e->readonly;
}

const char *
registry_export_description (const struct registry_export *e)
{
  if (e->desc_full)
    return e->desc_full;
  return e->desc ? e->desc : "";
}

bool
registry_export_removed (const struct registry_export *e)
{
  return __atomic_load_n (&e->removed, __ATOMIC_RELAXED);
}

/* ---- what a control socket shows ---------------------------------------- */

static int
entry_fill (struct registry *r, struct registry_entry *x,
            struct registry_export *e)
{
  x->name = strdup (e->name);
  x->path = strdup (e->path);
  x->format = e->fmt_name ? strdup (e->fmt_name) : NULL;
  x->backing = e->backing_path ? strdup (e->backing_path) : NULL;
  x->size = e->file ? image_size (e->file->img) : e->size;
  x->connections = e->refs;
  x->readonly = e->file ? e->readonly
    : r->cfg.readonly || e->force_ro || reg_is_known_backing (r, &e->id);
  if (x->name == NULL || x->path == NULL ||
      (e->fmt_name && x->format == NULL) ||
      (e->backing_path && x->backing == NULL))
    return -1;
  return 0;
}

/* The names of the exports of v[0..n) whose backing file is e's. */
static int
entry_dependents (struct registry_entry *x, struct registry_export *e,
                  struct registry_export **v, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++) {
    char **d;
    if (!v[i]->has_backing ||
        !image_file_id_equal (&v[i]->backing_id, &e->id))
      continue;
    d = realloc (x->dependents, (x->ndependents + 1) * sizeof *d);
    if (d == NULL)
      return -1;
    x->dependents = d;
    if ((d[x->ndependents] = strdup (v[i]->name)) == NULL)
      return -1;
    x->ndependents++;
  }
  return 0;
}

/* Every export of the table in list order (lock held), malloc'd. */
static struct registry_export **
all_exports (struct registry *r, size_t *n)
{
  struct registry_export **v;
  size_t i;

  *n = 0;
  v = malloc ((r->nfixed + r->ndir + 1) * sizeof *v);
  if (v == NULL)
    return NULL;
  for (i = 0; i < r->nfixed; i++)
    v[(*n)++] = r->fixed[i];
  for (i = 0; i < r->ndir; i++)
    if (!r->dirv[i]->bad)
      v[(*n)++] = r->dirv[i];
  return v;
}

int
registry_entries (struct registry *r, struct registry_entry **out,
                  size_t *nout)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&r->lock);
  CLEANUP_FREE struct registry_export **v = NULL;
  struct registry_entry *x;
  size_t n, i;

  *out = NULL;
  *nout = 0;
  if (r->dir && scan_dir (r, true) == -1)
    return -1;
  v = all_exports (r, &n);
  x = calloc (n + 1, sizeof *x);
  if (v == NULL || x == NULL) {
    free (x);
    image_set_error (ENOMEM, "out of memory");
    return -1;
  }
  for (i = 0; i < n; i++)
    if (entry_fill (r, &x[i], v[i]) == -1 ||
        entry_dependents (&x[i], v[i], v, n) == -1) {
      registry_entries_free (x, i + 1);
      image_set_error (ENOMEM, "out of memory");
      return -1;
    }
  *out = x;
  *nout = n;
  return 0;
}

void
registry_entries_free (struct registry_entry *v, size_t n)
{
  size_t i, j;

  for (i = 0; i < n; i++) {
    free (v[i].name);
    free (v[i].path);
    free (v[i].format);
    free (v[i].backing);
    for (j = 0; j < v[i].ndependents; j++)
      free (v[i].dependents[j]);
    free (v[i].dependents);
  }
  free (v);
}
