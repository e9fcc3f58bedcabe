/* SPDX-License-Identifier: BSD-3-Clause */
/* The export table: export names to shared engine images.
 *
 * A list of entries, one per export name in use, guarded by one mutex
 * that is also held while an image is being opened, so that two
 * connections racing for a new export cannot open the same file twice
 * (two engine objects writing one file would corrupt it: each caches its
 * own metadata).  Opens are rare; I/O never takes this lock.
 *
 * Files, not names, are what must be opened once.  Each entry remembers
 * the identity (device, inode) of its file and of every backing file of
 * its chain:
 *
 *   a name for a file that is already open  ->  the same image (an alias)
 *   a file that an open export reads as its
 *   backing file (or, in dir= mode, that an
 *   image of DIR names as backing file)     ->  served read-only, so that
 *                                               no client writes under a
 *                                               clone's feet
 *   an image whose backing file is already
 *   served writable                         ->  refused (EBUSY)
 *
 * Identities are only compared within this process: another program
 * writing the same files is not seen (the engine takes no file locks).
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "cleanup.h"
#include "exports.h"
#include "size.h"

/* The NBD protocol's limit on names and descriptions. */
#define MAX_STRING 4096

/* A file's identity. */
struct file_id {
  dev_t dev;
  ino_t ino;
};

/* An export in use.  chain[0] is the file itself, chain[1] its backing
 * file and so on. */
struct entry {
  struct export exp;
  bool owns_img;                /* false: an alias of an earlier entry */
  unsigned chain_len;
  struct file_id chain[IMAGE_MAX_CHAIN + 1];
  struct entry *next;
};

static struct exports_config cfg;
static char *file_description;  /* file= mode, from exports_init */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry *entries;   /* called with lock held */

/* ---- errors ------------------------------------------------------------ */

int
engine_error (void)
{
  int e = image_errno ();

  nbdkit_error ("%s", image_error ());
  nbdkit_set_error (e ? e : EIO);
  return -1;
}

/* nbdkit_error and nbdkit_set_error at once; returns -1. */
static int __attribute__ ((format (printf, 2, 3)))
export_error (int errnum, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  nbdkit_verror (fmt, ap);
  va_end (ap);
  nbdkit_set_error (errnum);
  return -1;
}

/* ---- names, paths, identities ------------------------------------------ */

/* The file behind export name, malloc'd, or NULL after an error.  In dir=
 * mode the name comes from the client: it must be a plain file name. */
static char *
export_path (const char *name)
{
  char *path;

  if (cfg.file)
    path = strdup (cfg.file);
  else if (name[0] == '\0') {
    export_error (ENOENT, "no default export: %s holds no image", cfg.dir);
    return NULL;
  }
  else if (strchr (name, '/') ||
           strcmp (name, ".") == 0 || strcmp (name, "..") == 0) {
    export_error (ENOENT, "export '%s': not a file name in %s", name,
                  cfg.dir);
    return NULL;
  }
  else if (asprintf (&path, "%s/%s", cfg.dir, name) == -1)
    path = NULL;
  if (path == NULL)
    export_error (ENOMEM, "out of memory");
  return path;
}

/* Fills *id for path, which must be a regular file in dir= mode (the
 * client chose it).  -1 after an error. */
static int
path_id (const char *path, struct file_id *id)
{
  struct stat st;

  if (stat (path, &st) == -1)
    return export_error (errno, "%s: %m", path);
  if (cfg.dir && !S_ISREG (st.st_mode))
    return export_error (ENOENT, "%s: not a regular file", path);
  id->dev = st.st_dev;
  id->ino = st.st_ino;
  return 0;
}

static bool
same_file (const struct file_id *a, const struct file_id *b)
{
  return a->dev == b->dev && a->ino == b->ino;
}

/* Records the identity of every file of img's chain in e. */
static int
chain_ids (struct image *img, struct entry *e)
{
  unsigned i;

  for (i = 0; img != NULL && i <= IMAGE_MAX_CHAIN;
       img = image_backing (img), i++) {
    struct image_info info;
    struct stat st;

    image_get_info (img, &info);
    if (stat (info.filename, &st) == -1)
      return export_error (errno, "%s: %m", info.filename);
    e->chain[i].dev = st.st_dev;
    e->chain[i].ino = st.st_ino;
  }
  e->chain_len = i;
  return 0;
}

/* "qed, 10 GiB, backing base.qed", malloc'd; NULL if it does not fit in
 * an NBD string or memory ran out (exports then go without one). */
static char *
describe (struct image *img)
{
  struct image_info info;
  char size[32];
  char *d;
  int r;

  image_get_info (img, &info);
  size_format (info.virtual_size, size, sizeof size);
  if (info.backing_filename)
    r = asprintf (&d, "%s, %s, backing %s", info.format, size,
                  info.backing_filename);
  else
    r = asprintf (&d, "%s, %s", info.format, size);
  if (r == -1)
    return NULL;
  if (strlen (d) > MAX_STRING) {
    free (d);
    return NULL;
  }
  return d;
}

/* ---- the directory ---------------------------------------------------------- */

static int
compare_names (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

static void
free_names (char **names, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++)
    free (names[i]);
  free (names);
}

/* Appends a copy of name to *names. */
static int
push_name (char ***names, size_t *n, size_t *alloc, const char *name)
{
  if (*n == *alloc) {
    size_t a = *alloc ? *alloc * 2 : 16;
    char **p = realloc (*names, a * sizeof *p);
    if (p == NULL)
      return -1;
    *names = p;
    *alloc = a;
  }
  if (((*names)[*n] = strdup (name)) == NULL)
    return -1;
  (*n)++;
  return 0;
}

/* The regular files of DIR (symbolic links followed), sorted.  NULL with
 * *n == 0 is an empty directory; NULL with *n == SIZE_MAX an error. */
static char **
dir_names (size_t *n)
{
  DIR *d = opendir (cfg.dir);
  char **names = NULL;
  size_t alloc = 0;
  struct dirent *de;
  struct stat st;

  *n = 0;
  if (d == NULL) {
    export_error (errno, "dir=%s: %m", cfg.dir);
    *n = SIZE_MAX;
    return NULL;
  }
  while ((de = readdir (d)) != NULL) {
    if (strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0 ||
        fstatat (dirfd (d), de->d_name, &st, 0) == -1 ||
        !S_ISREG (st.st_mode))
      continue;
    if (push_name (&names, n, &alloc, de->d_name) == -1) {
      export_error (ENOMEM, "dir=%s: out of memory", cfg.dir);
      free_names (names, *n);
      closedir (d);
      *n = SIZE_MAX;
      return NULL;
    }
  }
  closedir (d);
  if (names)
    qsort (names, *n, sizeof *names, compare_names);
  return names;
}

/* Options for opening an image read-only without changing it.  Peeks
 * at images this process may be serving (dir= mode) take extra_flags
 * IMAGE_OPEN_FORCE_SHARE: their own lock would conflict with ours. */
static struct image_open_opts
peek_opts (unsigned extra_flags)
{
  struct image_open_opts o = {
    .format = cfg.format,
    .cache_size = cfg.cache_size,
    .flags = IMAGE_OPEN_READONLY | extra_flags,
  };
  return o;
}

/* In dir= mode: true if some image of DIR names the file id as its
 * backing file.  Called with lock held. */
static bool
is_backing_in_dir (const struct file_id *id)
{
  struct image_open_opts o = peek_opts (IMAGE_OPEN_NO_BACKING |
                                        IMAGE_OPEN_FORCE_SHARE);
  size_t n, i;
  char **names = dir_names (&n);
  bool found = false;

  for (i = 0; names != NULL && i < n && !found; i++) {
    CLEANUP_FREE char *path = NULL;
    struct image_info info;
    struct image *img;
    struct stat st;

    if (asprintf (&path, "%s/%s", cfg.dir, names[i]) == -1) {
      path = NULL;
      continue;
    }
    if ((img = image_open (path, &o)) == NULL)
      continue;
    image_get_info (img, &info);
    found = info.full_backing_filename != NULL &&
            stat (info.full_backing_filename, &st) == 0 &&
            st.st_dev == id->dev && st.st_ino == id->ino;
    image_close (img);
  }
  if (names)
    free_names (names, n);
  return found;
}

/* ---- the table (called with lock held) ---------------------------------------- */

static struct entry *
find_by_name (const char *name)
{
  struct entry *e;

  for (e = entries; e; e = e->next)
    if (strcmp (e->exp.name, name) == 0)
      return e;
  return NULL;
}

/* The entry whose own file is id. */
static struct entry *
find_by_file (const struct file_id *id)
{
  struct entry *e;

  for (e = entries; e; e = e->next)
    if (same_file (&e->chain[0], id))
      return e;
  return NULL;
}

/* An entry that reads the file id as one of its backing files. */
static struct entry *
find_backing_user (const struct file_id *id)
{
  struct entry *e;
  unsigned i;

  for (e = entries; e; e = e->next)
    for (i = 1; i < e->chain_len; i++)
      if (same_file (&e->chain[i], id))
        return e;
  return NULL;
}

/* An entry serving writable one of the backing files of n. */
static struct entry *
find_writable_backing (const struct entry *n)
{
  struct entry *e;
  unsigned i;

  for (e = entries; e; e = e->next)
    if (!image_is_readonly (e->exp.img))
      for (i = 1; i < n->chain_len; i++)
        if (same_file (&n->chain[i], &e->chain[0]))
          return e;
  return NULL;
}

static void
free_entry (struct entry *e)
{
  if (e) {
    free (e->exp.name);
    free (e->exp.description);
    free (e);
  }
}

/* A second name for the file of e: shares e's image. */
static struct entry *
add_alias (const char *name, const struct entry *e)
{
  struct entry *a = calloc (1, sizeof *a);

  if (a == NULL || (a->exp.name = strdup (name)) == NULL) {
    free_entry (a);
    export_error (ENOMEM, "out of memory");
    return NULL;
  }
  a->exp.img = e->exp.img;
  a->exp.description = e->exp.description ? strdup (e->exp.description)
                                          : NULL;
  a->owns_img = false;
  a->chain_len = e->chain_len;
  memcpy (a->chain, e->chain, sizeof a->chain);
  a->next = entries;
  entries = a;
  nbdkit_debug ("export '%s' is the same file as export '%s'", name,
                e->exp.name);
  return a;
}

static bool
is_permission_error (int e)
{
  return e == EROFS || e == EACCES || e == EPERM;
}

/* Opens path for serving: read-write unless readonly, falling back to
 * read-only when the file (or its file system) cannot be written. */
static struct image *
open_image (const char *path, bool readonly)
{
  struct image_open_opts o = {
    .format = cfg.format,
    .cache_size = cfg.cache_size,
    .flags = readonly ? IMAGE_OPEN_READONLY : 0,
  };
  struct image *img = image_open (path, &o);

  if (img == NULL && !readonly && is_permission_error (image_errno ())) {
    nbdkit_debug ("%s; serving it read-only", image_error ());
    o.flags = IMAGE_OPEN_READONLY;
    img = image_open (path, &o);
  }
  if (img == NULL)
    engine_error ();
  return img;
}

/* Decides whether the file id, asked for read-write, must be served
 * read-only because clones read it as their backing file. */
static bool
must_be_readonly (const char *path, const struct file_id *id)
{
  struct entry *user = find_backing_user (id);

  if (user) {
    nbdkit_debug ("%s is a backing file of export '%s': serving it "
                  "read-only", path, user->exp.name);
    return true;
  }
  if (cfg.dir && is_backing_in_dir (id)) {
    nbdkit_debug ("%s is the backing file of an image in %s: serving it "
                  "read-only", path, cfg.dir);
    return true;
  }
  return false;
}

/* Opens export name and adds it to the table. */
static struct entry *
add_entry (const char *name, bool readonly)
{
  CLEANUP_FREE char *path = export_path (name);
  struct entry *e, *other;
  struct file_id id = { 0, 0 };

  if (path == NULL || path_id (path, &id) == -1)
    return NULL;
  if ((other = find_by_file (&id)) != NULL)
    return add_alias (name, other);
  if (!readonly)
    readonly = must_be_readonly (path, &id);

  e = calloc (1, sizeof *e);
  if (e == NULL || (e->exp.name = strdup (name)) == NULL) {
    free_entry (e);
    export_error (ENOMEM, "out of memory");
    return NULL;
  }
  e->exp.img = open_image (path, readonly);
  if (e->exp.img == NULL) {
    free_entry (e);
    return NULL;
  }
  e->owns_img = true;
  if (chain_ids (e->exp.img, e) == -1)
    goto err;
  if ((other = find_writable_backing (e)) != NULL) {
    struct image_info info;
    image_get_info (other->exp.img, &info);
    export_error (EBUSY, "%s: backing file %s is served writable as "
                  "export '%s'", path, info.filename, other->exp.name);
    goto err;
  }
  e->exp.description = describe (e->exp.img);
  e->next = entries;
  entries = e;
  nbdkit_debug ("export '%s': opened %s%s", name, path,
                image_is_readonly (e->exp.img) ? " read-only" : "");
  return e;

 err:
  image_close (e->exp.img);
  free_entry (e);
  return NULL;
}

/* ---- the interface ------------------------------------------------------------ */

int
exports_init (const struct exports_config *c)
{
  struct image_open_opts o;
  struct image *img;
  struct stat st;

  cfg = *c;
  if (cfg.dir) {
    if (stat (cfg.dir, &st) == -1)
      return export_error (errno, "dir=%s: %m", cfg.dir);
    if (!S_ISDIR (st.st_mode))
      return export_error (ENOTDIR, "dir=%s: not a directory", cfg.dir);
    return 0;
  }
  /* Refuse a bad image (or one another process writes: this open
   * takes the locks of a reader) now, while nbdkit can still exit with
   * the message; the serving open comes with the first connection. */
  o = peek_opts (0);
  img = image_open (cfg.file, &o);
  if (img == NULL)
    return engine_error ();
  free (file_description);
  file_description = describe (img);
  image_close (img);
  return 0;
}

struct export *
exports_get (const char *name, bool readonly)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&lock);
  struct entry *e;

  if (cfg.file)
    name = "";                  /* one file, whatever the name asked */
  e = find_by_name (name);
  if (e == NULL)
    e = add_entry (name, readonly);
  return e ? &e->exp : NULL;
}

/* Whether export name can be served, and its description (malloc'd, may
 * be NULL): from its open entry, else from a read-only open. */
static bool
peek_export (const char *name, char **description)
{
  struct image_open_opts o = peek_opts (IMAGE_OPEN_FORCE_SHARE);
  CLEANUP_FREE char *path = NULL;
  struct image *img;

  *description = NULL;
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&lock);
    struct entry *e = find_by_name (name);
    if (e) {
      if (e->exp.description)
        *description = strdup (e->exp.description);
      return true;
    }
  }
  if (asprintf (&path, "%s/%s", cfg.dir, name) == -1) {
    path = NULL;
    return false;
  }
  img = image_open (path, &o);
  if (img == NULL) {
    nbdkit_debug ("dir=: not serving %s", image_error ());
    return false;
  }
  *description = describe (img);
  image_close (img);
  return true;
}

int
exports_list (struct nbdkit_exports *list)
{
  char **names;
  size_t n, i;
  int r = 0;

  if (cfg.file)
    return nbdkit_add_export (list, "", file_description);
  names = dir_names (&n);
  if (names == NULL)
    return n == 0 ? 0 : -1;
  for (i = 0; i < n && r == 0; i++) {
    CLEANUP_FREE char *description = NULL;
    if (peek_export (names[i], &description))
      r = nbdkit_add_export (list, names[i], description);
  }
  free_names (names, n);
  return r;
}

const char *
exports_default (void)
{
  const char *r = NULL;
  char **names;
  size_t n, i;

  if (cfg.file)
    return "";
  names = dir_names (&n);
  for (i = 0; names != NULL && i < n && r == NULL; i++) {
    CLEANUP_FREE char *description = NULL;
    if (peek_export (names[i], &description))
      r = nbdkit_strdup_intern (names[i]);
  }
  if (names)
    free_names (names, n);
  return r;
}

void
exports_close_all (void)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&lock);
  struct entry *e, *next;

  for (e = entries; e; e = next) {
    next = e->next;
    if (e->owns_img && image_close (e->exp.img) == -1)
      nbdkit_error ("%s", image_error ());
    free_entry (e);
  }
  entries = NULL;
  free (file_description);
  file_description = NULL;
}
