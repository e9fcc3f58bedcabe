/* SPDX-License-Identifier: BSD-3-Clause */
/* What the registry knows without opening an image for serving: the
 * name table, each export's header (peeked once: size, description,
 * its file's identity and its backing file's), and directory mode.
 *
 * A peek opens the header read-only, without the backing chain and with
 * force-share (this process may be serving the file), and closes it at
 * once.  A scan of the directory peeks only files that are new or whose
 * (device, inode, length, modification time) changed, so a LIST over
 * 10,000 unchanged images is one readdir and 10,000 stats.
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"
#include "size.h"

/* ---- the name table ------------------------------------------------------ */

static size_t
hash (const char *s, size_t len)
{
  size_t h = 14695981039346656037ULL;   /* FNV-1a */
  size_t i;

  for (i = 0; i < len; i++)
    h = (h ^ (unsigned char) s[i]) * 1099511628211ULL;
  return h;
}

struct registry_export *
names_find (struct name_table *t, const char *name, size_t len)
{
  struct registry_export *e;

  if (t->nb == 0)
    return NULL;
  for (e = t->b[hash (name, len) & (t->nb - 1)]; e; e = e->hnext)
    if (strlen (e->name) == len && memcmp (e->name, name, len) == 0)
      return e;
  return NULL;
}

static int
names_grow (struct name_table *t)
{
  size_t nb = t->nb ? t->nb * 2 : 64, i;
  struct registry_export **b = calloc (nb, sizeof *b), *e, *next;

  if (b == NULL)
    return -1;
  for (i = 0; i < t->nb; i++)
    for (e = t->b[i]; e; e = next) {
      size_t k = hash (e->name, strlen (e->name)) & (nb - 1);
      next = e->hnext;
      e->hnext = b[k];
      b[k] = e;
    }
  free (t->b);
  t->b = b;
  t->nb = nb;
  return 0;
}

int
names_insert (struct name_table *t, struct registry_export *e)
{
  size_t k;

  if (t->n >= t->nb && names_grow (t) == -1) {
    image_set_error (ENOMEM, "export '%s': out of memory", e->name);
    return -1;
  }
  k = hash (e->name, strlen (e->name)) & (t->nb - 1);
  e->hnext = t->b[k];
  t->b[k] = e;
  t->n++;
  return 0;
}

void
names_remove (struct name_table *t, struct registry_export *e)
{
  struct registry_export **p;

  if (t->nb == 0)
    return;
  for (p = &t->b[hash (e->name, strlen (e->name)) & (t->nb - 1)]; *p;
       p = &(*p)->hnext)
    if (*p == e) {
      *p = e->hnext;
      t->n--;
      return;
    }
}

/* ---- headers --------------------------------------------------------------- */

/* "qed, 10 GiB, backing base.qed", malloc'd; NULL if it does not fit in
 * an NBD string or memory ran out. */
static char *
describe (const struct image_info *info)
{
  char size[32];
  char *d;
  int r;

  size_format (info->virtual_size, size, sizeof size);
  if (info->backing_filename)
    r = asprintf (&d, "%s, %s, backing %s", info->format, size,
                  info->backing_filename);
  else
    r = asprintf (&d, "%s, %s", info->format, size);
  if (r == -1)
    return NULL;
  if (strlen (d) > REG_MAX_NAME) {
    free (d);
    return NULL;
  }
  return d;
}

static void
set_signature (struct registry_export *e, const struct stat *st)
{
  image_file_id_of_stat (st, &e->id);
  e->fsize = st->st_size;
  e->mtime_ns = (int64_t) st->st_mtim.tv_sec * 1000000000 +
    st->st_mtim.tv_nsec;
}

static bool
same_signature (const struct registry_export *e, const struct stat *st)
{
  struct image_file_id id;

  image_file_id_of_stat (st, &id);
  return image_file_id_equal (&e->id, &id) && e->fsize == st->st_size &&
    e->mtime_ns == (int64_t) st->st_mtim.tv_sec * 1000000000 +
    st->st_mtim.tv_nsec;
}

/* The identity of the backing file info names, if it exists. */
static void
backing_identity (struct registry_export *e, const struct image_info *info)
{
  struct stat st;

  e->has_backing = info->full_backing_filename != NULL &&
    stat (info->full_backing_filename, &st) == 0;
  if (e->has_backing)
    image_file_id_of_stat (&st, &e->backing_id);
}

int
scan_peek (struct registry *r, struct registry_export *e)
{
  struct image_open_opts o = {
    .format = e->format ? e->format : r->cfg.format,
    .flags = IMAGE_OPEN_READONLY | IMAGE_OPEN_NO_BACKING |
             IMAGE_OPEN_FORCE_SHARE,
    .backing_dirs = reg_backing_dirs (r, e),
  };
  struct image_info info;
  struct image *img;
  struct stat st;

  if (stat (e->path, &st) == -1) {
    image_set_error (errno, "%s: %s", e->path, strerror (errno));
    return -1;
  }
  set_signature (e, &st);
  if (e->from_dir &&
      image_check_path_confined (e->path, reg_backing_dirs (r, e)) == -1)
    return -1;
  img = image_open (e->path, &o);
  if (img == NULL)
    return -1;
  image_get_info (img, &info);
  e->size = info.virtual_size;
  e->cluster_size = info.cluster_size;
  free (e->desc);
  e->desc = describe (&info);
  free (e->fmt_name);
  e->fmt_name = strdup (info.format);
  free (e->backing_path);
  e->backing_path = info.full_backing_filename ?
    strdup (info.full_backing_filename) : NULL;
  backing_identity (e, &info);
  image_close (img);
  return 0;
}

int
scan_fill_made (struct registry_export *e, const char *format,
                 uint64_t size, const char *backing,
                 const struct image_file_id *backing_id)
{
  struct image_info info = {
    .format = format, .virtual_size = size, .backing_filename = backing,
  };
  struct stat st;

  if (stat (e->path, &st) == -1) {
    image_set_error (errno, "%s: %s", e->path, strerror (errno));
    return -1;
  }
  set_signature (e, &st);
  e->size = size;
  e->cluster_size = 64u << 10;  /* both formats' default (image_create) */
  e->desc = describe (&info);
  e->fmt_name = strdup (format);
  e->backing_path = strdup (backing);
  e->has_backing = true;
  e->backing_id = *backing_id;
  if (e->fmt_name == NULL || e->backing_path == NULL) {
    image_set_error (ENOMEM, "out of memory");
    return -1;
  }
  return 0;
}

/* ---- directory mode ------------------------------------------------------------ */

static int
compare_exports (const void *a, const void *b)
{
  const struct registry_export *x = *(const struct registry_export *const *) a;
  const struct registry_export *y = *(const struct registry_export *const *) b;

  return strcmp (x->name, y->name);
}

/* A new dir= export for name (lock held), peeked; NULL on error. */
static struct registry_export *
dir_new (struct registry *r, const char *name, size_t len)
{
  struct registry_export *e = calloc (1, sizeof *e);

  if (e == NULL ||
      (e->name = strndup (name, len)) == NULL ||
      asprintf (&e->path, "%s/%s", r->dir, e->name) == -1) {
    if (e)
      e->path = NULL;
    reg_export_free (e);
    image_set_error (ENOMEM, "%s: out of memory", r->dir);
    return NULL;
  }
  e->reg = r;
  e->from_dir = true;
  if (scan_peek (r, e) == -1) {
    reg_debug (r, "dir=: not serving %s", image_error ());
    e->bad = true;
  }
  if (names_insert (&r->names, e) == -1) {
    reg_export_free (e);
    return NULL;
  }
  return e;
}

static int
dir_push (struct registry *r, struct registry_export *e)
{
  if (r->ndir == r->cap_dir) {
    size_t cap = r->cap_dir ? r->cap_dir * 2 : 64;
    struct registry_export **v = realloc (r->dirv, cap * sizeof *v);
    if (v == NULL)
      return -1;
    r->dirv = v;
    r->cap_dir = cap;
  }
  r->dirv[r->ndir++] = e;
  return 0;
}

/* One directory entry of a scan (lock held). */
static void
scan_entry (struct registry *r, const char *name, const struct stat *st)
{
  struct registry_export *e = names_find (&r->names, name, strlen (name));

  if (e && !e->from_dir)
    return;                     /* a registry_add export wins */
  if (e && !same_signature (e, st) && e->refs == 0) {
    e->bad = scan_peek (r, e) == -1;
    if (e->bad)
      reg_debug (r, "dir=: not serving %s", image_error ());
  }
  if (e == NULL && (e = dir_new (r, name, strlen (name))) == NULL)
    return;
  e->seen = true;
}

/* Exports of the old list not seen again leave the table; the seen ones
 * make the new list, sorted. */
static void
scan_collect (struct registry *r, struct registry_export **old, size_t nold)
{
  size_t i;

  for (i = 0; i < nold; i++)
    if (!old[i]->seen)
      reg_export_unlink (r, old[i]);
}

static int
scan_read (struct registry *r, DIR *d)
{
  struct registry_export *e;
  struct dirent *de;
  struct stat st;
  size_t i;

  while ((de = readdir (d)) != NULL) {
    if (strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0 ||
        fstatat (dirfd (d), de->d_name, &st, 0) == -1 ||
        !S_ISREG (st.st_mode))
      continue;
    scan_entry (r, de->d_name, &st);
  }
  /* Everything seen, old or new, from the name table. */
  for (i = 0; i < r->names.nb; i++)
    for (e = r->names.b[i]; e; e = e->hnext)
      if (e->from_dir && e->seen && dir_push (r, e) == -1) {
        image_set_error (ENOMEM, "%s: out of memory", r->dir);
        return -1;
      }
  return 0;
}

int
scan_dir (struct registry *r, bool always)
{
  struct registry_export **old = r->dirv;
  size_t nold = r->ndir, i;
  struct stat st;
  DIR *d;
  int ret;

  if (stat (r->dir, &st) == -1 || (d = opendir (r->dir)) == NULL) {
    image_set_error (errno, "dir=%s: %s", r->dir, strerror (errno));
    return -1;
  }
  if (!always && r->dir_mtime_ns == (int64_t) st.st_mtim.tv_sec *
      1000000000 + st.st_mtim.tv_nsec) {
    closedir (d);
    return 0;
  }
  r->dir_mtime_ns = (int64_t) st.st_mtim.tv_sec * 1000000000 +
    st.st_mtim.tv_nsec;
  for (i = 0; i < nold; i++)
    old[i]->seen = false;
  r->dirv = NULL;
  r->ndir = r->cap_dir = 0;
  ret = scan_read (r, d);
  closedir (d);
  scan_collect (r, old, nold);
  free (old);
  for (i = 0; i < r->ndir; i++)
    r->dirv[i]->seen = false;
  if (r->dirv)
    qsort (r->dirv, r->ndir, sizeof *r->dirv, compare_exports);
  return ret;
}

/* A plain file name of the directory: no '/', not "." or "..". */
static bool
is_file_name (const char *name, size_t len)
{
  return len > 0 && memchr (name, '/', len) == NULL &&
    memchr (name, '\0', len) == NULL &&
    !(len == 1 && name[0] == '.') &&
    !(len == 2 && name[0] == '.' && name[1] == '.');
}

struct registry_export *
scan_dir_lookup (struct registry *r, const char *name, size_t len)
{
  struct registry_export *e;

  if (!is_file_name (name, len))
    return NULL;
  scan_dir (r, false);
  e = names_find (&r->names, name, len);
  return e && !e->bad ? e : NULL;
}
