/* SPDX-License-Identifier: BSD-3-Clause */
/* Clones on demand and clone-create (registry.h, "clones").
 *
 * An unknown export name becomes a persistent overlay:
 *
 *   "web-7"       --> DIR/web-7.qcow2        over the default base
 *   "centos/web-7" --> DIR/centos/web-7.qcow2 over template centos's base
 *
 * Creation never leaves a half-made file under a real name, whatever
 * instant the process dies at:
 *
 *   1. mkstemp  DIR/.web-7.qcow2.tmp-XXXXXX   (only temporaries are partial)
 *   2. image_create over it, which fsyncs the file (header, tables)
 *   3. renameat2 (RENAME_NOREPLACE) to DIR/web-7.qcow2: the name appears
 *      whole or not at all, and a racing creator's overlay is never
 *      replaced (the loser unlinks its temporary and serves the winner's)
 *   4. fsync DIR, so the name survives a crash once the client is served
 *
 * Temporaries left by a crash between 1 and 3 are removed at set-up
 * (registry_clone_dir).  Creation reads nothing of the base: its size
 * and format were read once by registry_clone_base, so a create costs
 * the same whatever the base.
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "internal.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

#define TMP_MARK ".tmp-"

/* ---- names ------------------------------------------------------------------ */

static bool
name_char_ok (char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/* One component of a clone name: [A-Za-z0-9._-]+, no leading dot. */
static bool
component_ok (const char *s, size_t len)
{
  size_t i;

  if (len == 0 || s[0] == '.')
    return false;
  for (i = 0; i < len; i++)
    if (!name_char_ok (s[i]))
      return false;
  return true;
}

/* name for a message: at most 64 bytes, anything unprintable as '?'. */
static void
printable (const char *name, size_t len, char *buf, size_t size)
{
  size_t i, n = len < size - 4 ? len : size - 4;

  for (i = 0; i < n; i++)
    buf[i] = name[i] >= 0x20 && name[i] < 0x7f ? name[i] : '?';
  strcpy (buf + n, n < len ? "..." : "");
}

static const struct clone_base *
find_base (struct registry *r, const char *tmpl, size_t len)
{
  size_t i;

  for (i = 0; i < r->nbases; i++) {
    const char *t = r->bases[i].tmpl;
    if (tmpl == NULL ? t == NULL
        : t && strlen (t) == len && memcmp (t, tmpl, len) == 0)
      return &r->bases[i];
  }
  return NULL;
}

/* The base of a clone name and where its leaf starts; NULL after
 * image_set_error (ENOENT) if the name is not one. */
static const struct clone_base *
parse_name (struct registry *r, const char *name, size_t len, size_t *leaf)
{
  const char *slash = memchr (name, '/', len);
  const struct clone_base *b = NULL;
  char shown[72];
  const char *why = "not [A-Za-z0-9._-] or a leading dot";

  *leaf = slash ? (size_t) (slash - name) + 1 : 0;
  if (len > REGISTRY_CLONE_NAME_MAX)
    why = "longer than 200 bytes";
  else if (!component_ok (name + *leaf, len - *leaf) ||
           (slash && !component_ok (name, *leaf - 1)))
    ;
  else if ((b = find_base (r, slash ? name : NULL,
                           slash ? *leaf - 1 : 0)) == NULL)
    why = slash ? "no such template" : "no base without a template";
  if (b == NULL) {
    printable (name, len, shown, sizeof shown);
    image_set_error (ENOENT, "export '%s' (%zu bytes): not a clone name "
                     "(%s)", shown, len, why);
  }
  return b;
}

/* ---- making an overlay -------------------------------------------------------- */

static int
sync_dir (const char *dir)
{
  int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int r;

  if (fd == -1)
    return -1;
  r = fsync (fd);
  close (fd);
  return r;
}

/* rename(2) that never replaces: renameat2, or link + unlink where the
 * file system lacks it. */
static int
rename_noreplace (const char *from, const char *to)
{
  if (renameat2 (AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
    return 0;
  if (errno != EINVAL && errno != ENOSYS)
    return -1;
  if (link (from, to) == -1)
    return -1;
  unlink (from);
  return 0;
}

/* Creates dir/file over b, atomically.  0 also when another creator
 * made it first (*made false then); -1 after image_set_error. */
static int
overlay_make (const char *dir, const char *file, const char *format,
              const struct clone_base *b, bool *made)
{
  struct image_create_opts o = {
    .format = format,
    .size = b->size,
    .backing_file = b->path,
    .backing_format = b->format,
    .no_backing_check = true,
  };
  CLEANUP_FREE char *tmp = NULL, *final = NULL;
  int fd, e;

  if (asprintf (&tmp, "%s/.%s" TMP_MARK "XXXXXX", dir, file) == -1 ||
      asprintf (&final, "%s/%s", dir, file) == -1) {
    tmp = final = NULL;
    image_set_error (ENOMEM, "out of memory");
    return -1;
  }
  fd = mkstemp (tmp);
  if (fd == -1) {
    image_set_error (errno, "%s: %s", tmp, strerror (errno));
    return -1;
  }
  close (fd);
  if (image_create (tmp, &o) == -1) {
    unlink (tmp);
    return -1;
  }
  if (rename_noreplace (tmp, final) == -1) {
    e = errno;
    unlink (tmp);
    if (e == EEXIST)
      return 0;
    image_set_error (e, "%s: %s", final, strerror (e));
    return -1;
  }
  if (sync_dir (dir) == -1) {
    image_set_error (errno, "%s: fsync: %s", dir, strerror (errno));
    return -1;
  }
  *made = true;
  return 0;
}

/* Reserves a place under --max-exports for a clone being made. */
static int
reserve (struct registry *r, const char *name)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&r->lock);
  size_t n = r->nfixed + r->pending_clones, i;

  for (i = 0; i < r->ndir; i++)
    n += !r->dirv[i]->bad;
  if (r->cfg.max_exports && n >= r->cfg.max_exports) {
    image_set_error (ENOSPC, "export '%s': the limit of %zu exports is "
                     "reached", name, r->cfg.max_exports);
    return -1;
  }
  r->pending_clones++;
  return 0;
}

static void
unreserve (struct registry *r)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&r->lock);
  r->pending_clones--;
}

/* Makes (if needed) dir/file over b and adds it as export name.  0 also
 * when a racing lookup added the same name first. */
static int
clone_add (struct registry *r, const char *name, const char *dir,
           const char *file, const char *format,
           const struct clone_base *b, bool must_be_new)
{
  CLEANUP_FREE char *path = NULL;
  struct stat st;
  bool exists, made = false;
  int ret;

  if (asprintf (&path, "%s/%s", dir, file) == -1) {
    image_set_error (ENOMEM, "out of memory");
    return -1;
  }
  exists = lstat (path, &st) == 0;
  if (exists && must_be_new) {
    image_set_error (EEXIST, "%s: the file exists", path);
    return -1;
  }
  if (reserve (r, name) == -1)
    return -1;
  ret = exists ? 0 : overlay_make (dir, file, format, b, &made);
  if (ret == 0) {
    /* Clones on demand and those found in the folder are confined to
     * it and the bases' folders; clone-create names its base itself. */
    struct registry_add_opts o = { .format = format, .trusted = must_be_new };
    /* What we made need not be read back (a third of a clone's cost). */
    ret = made ? reg_add_made (r, name, path, &o, b)
      : reg_add (r, name, path, &o, true);
    if (ret == -1 && image_errno () == EEXIST && !must_be_new)
      ret = 0;
    if (ret == 0)
      reg_debug (r, "export '%s': %s %s", name,
                 exists ? "found" : "created", path);
  }
  unreserve (r);
  return ret;
}

int
clone_ensure (struct registry *r, const char *name, size_t len)
{
  const struct clone_base *b;
  CLEANUP_FREE char *dir = NULL, *file = NULL, *copy = NULL;
  size_t leaf;

  if (r->nbases == 0 || len == 0 || reg_known (r, name, len))
    return 0;
  b = parse_name (r, name, len, &leaf);
  if (b == NULL)
    return -1;
  copy = strndup (name, len);
  if (copy == NULL ||
      asprintf (&file, "%.*s.qcow2", (int) (len - leaf), name + leaf) == -1 ||
      (b->tmpl ? asprintf (&dir, "%s/%s", r->clone_dir, b->tmpl)
       : asprintf (&dir, "%s", r->clone_dir)) == -1) {
    file = dir = NULL;
    image_set_error (ENOMEM, "out of memory");
    return -1;
  }
  return clone_add (r, copy, dir, file, "qcow2", b, false);
}

/* ---- set-up ------------------------------------------------------------------- */

bool
clone_is_base (struct registry *r, const struct image_file_id *id)
{
  size_t i;

  for (i = 0; i < r->nbases; i++)
    if (image_file_id_equal (&r->bases[i].id, id))
      return true;
  return false;
}

static void
base_clear (struct clone_base *b)
{
  free (b->tmpl);
  free (b->path);
  free (b->format);
}

static void
confine_free (struct registry *r)
{
  size_t i;

  for (i = 0; r->clone_confine && r->clone_confine[i]; i++)
    free (r->clone_confine[i]);
  free (r->clone_confine);
  r->clone_confine = NULL;
}

void
clone_free_all (struct registry *r)
{
  size_t i;

  for (i = 0; i < r->nbases; i++)
    base_clear (&r->bases[i]);
  free (r->bases);
  free (r->clone_dir);
  confine_free (r);
  r->bases = NULL;
  r->clone_dir = NULL;
  r->nbases = 0;
}

/* r->clone_confine anew from the clone directory and the bases (set up
 * before serving). */
static int
confine_rebuild (struct registry *r)
{
  size_t i, n = 0, extra = 0;
  char **v;

  while (r->cfg.backing_dirs && r->cfg.backing_dirs[extra])
    extra++;
  v = calloc (r->nbases + extra + 2, sizeof *v);

  if (v == NULL)
    goto oom;
  if (r->clone_dir && (v[n++] = strdup (r->clone_dir)) == NULL)
    goto oom;
  for (i = 0; i < r->nbases; i++) {
    char *slash;
    if ((v[n] = strdup (r->bases[i].path)) == NULL)
      goto oom;
    slash = strrchr (v[n], '/');
    if (slash)
      slash[slash == v[n]] = '\0';       /* "/x" keeps "/" */
    n++;
  }
  for (i = 0; i < extra; i++)           /* and any --backing-dir */
    if ((v[n++] = strdup (r->cfg.backing_dirs[i])) == NULL)
      goto oom;
  confine_free (r);
  r->clone_confine = v;
  return 0;

 oom:
  for (i = 0; v && v[i]; i++)
    free (v[i]);
  free (v);
  image_set_error (ENOMEM, "out of memory");
  return -1;
}

/* Reads base's header into b (path made absolute). */
static int
base_read (struct clone_base *b, const char *base)
{
  struct image_open_opts o = {
    .flags = IMAGE_OPEN_READONLY | IMAGE_OPEN_NO_BACKING |
             IMAGE_OPEN_FORCE_SHARE,
  };
  struct image_info info;
  struct image *img;
  struct stat st;

  b->path = realpath (base, NULL);
  if (b->path == NULL || stat (b->path, &st) == -1) {
    image_set_error (errno, "%s: %s", base, strerror (errno));
    return -1;
  }
  image_file_id_of_stat (&st, &b->id);
  img = image_open (b->path, &o);
  if (img == NULL)
    return -1;
  image_get_info (img, &info);
  b->size = info.virtual_size;
  b->format = strdup (info.format);
  image_close (img);
  if (b->format == NULL) {
    image_set_error (ENOMEM, "out of memory");
    return -1;
  }
  return 0;
}

int
registry_clone_base (struct registry *r, const char *tmpl, const char *base)
{
  struct clone_base b = { 0 }, *v;

  if (tmpl && !component_ok (tmpl, strlen (tmpl))) {
    image_set_error (EINVAL, "template '%s': not [A-Za-z0-9._-] or a "
                     "leading dot", tmpl);
    return -1;
  }
  if (find_base (r, tmpl, tmpl ? strlen (tmpl) : 0)) {
    image_set_error (EEXIST, "%s%s: a base given twice", tmpl ? "template " :
                     "the default base", tmpl ? tmpl : "");
    return -1;
  }
  if (base_read (&b, base) == -1) {
    base_clear (&b);
    return -1;
  }
  if ((tmpl && (b.tmpl = strdup (tmpl)) == NULL) ||
      (v = realloc (r->bases, (r->nbases + 1) * sizeof *v)) == NULL) {
    image_set_error (ENOMEM, "out of memory");
    base_clear (&b);
    return -1;
  }
  r->bases = v;
  r->bases[r->nbases++] = b;
  return confine_rebuild (r);
}

/* The overlay file name of an export name's leaf, if it is one:
 * LEAF.qcow2 or LEAF.qed; the format, or NULL. */
static const char *
overlay_format (const char *file, size_t *leaflen)
{
  static const char *const exts[] = { "qcow2", "qed" };
  size_t len = strlen (file), i;

  for (i = 0; i < 2; i++) {
    size_t e = strlen (exts[i]) + 1;
    if (len > e && file[len - e] == '.' &&
        strcmp (file + len - e + 1, exts[i]) == 0 &&
        component_ok (file, len - e)) {
      *leaflen = len - e;
      return exts[i];
    }
  }
  return NULL;
}

/* Adds dir/file as an export if it is an overlay's name. */
static void
adopt_one (struct registry *r, const char *dir, const char *tmpl,
           const char *file)
{
  size_t leaf;
  struct registry_add_opts o = { .format = overlay_format (file, &leaf) };
  char *name, *path;
  int n;

  if (o.format == NULL)
    return;
  n = tmpl ? asprintf (&name, "%s/%.*s", tmpl, (int) leaf, file)
    : asprintf (&name, "%.*s", (int) leaf, file);
  if (n == -1)
    return;
  if (asprintf (&path, "%s/%s", dir, file) == -1) {
    free (name);
    return;
  }
  if (strlen (name) <= REGISTRY_CLONE_NAME_MAX &&
      reg_add (r, name, path, &o, true) == -1 && image_errno () != EEXIST)
    reg_debug (r, "clone folder: not serving %s", image_error ());
  free (name);
  free (path);
}

/* One pass over dir: removes the temporaries a crash left there, and
 * adds the overlays a previous run made (tmpl's, or the default base's),
 * so that they are listed and counted under max_exports. */
static int
scan_clone_folder (struct registry *r, const char *dir, const char *tmpl)
{
  DIR *d = opendir (dir);
  struct dirent *de;

  if (d == NULL) {
    image_set_error (errno, "clone folder %s: %s", dir, strerror (errno));
    return -1;
  }
  while ((de = readdir (d)) != NULL) {
    if (de->d_name[0] != '.' || strstr (de->d_name, TMP_MARK) == NULL)
      adopt_one (r, dir, tmpl, de->d_name);
    else if (unlinkat (dirfd (d), de->d_name, 0) == 0)
      reg_debug (r, "removed %s/%s, left by an interrupted clone",
                 dir, de->d_name);
  }
  closedir (d);
  return 0;
}

/* dir/tmpl made if needed, and cleaned. */
static int
template_dir (struct registry *r, const char *tmpl)
{
  CLEANUP_FREE char *sub = NULL;

  if (asprintf (&sub, "%s/%s", r->clone_dir, tmpl) == -1) {
    sub = NULL;
    image_set_error (ENOMEM, "out of memory");
    return -1;
  }
  if (mkdir (sub, 0755) == -1 && errno != EEXIST) {
    image_set_error (errno, "%s: %s", sub, strerror (errno));
    return -1;
  }
  return scan_clone_folder (r, sub, tmpl);
}

const char *
registry_clone_from_split (const char *arg, size_t *tmpl_len)
{
  const char *eq = strchr (arg, '=');

  *tmpl_len = 0;
  if (eq == NULL || eq == arg || memchr (arg, '/', (size_t) (eq - arg)))
    return arg;
  *tmpl_len = (size_t) (eq - arg);
  return eq + 1;
}

int
registry_clone_dir (struct registry *r, const char *dir)
{
  struct stat st;
  size_t i;

  free (r->clone_dir);
  r->clone_dir = realpath (dir, NULL);
  if (r->clone_dir == NULL || stat (r->clone_dir, &st) == -1) {
    image_set_error (errno, "clone folder %s: %s", dir, strerror (errno));
    return -1;
  }
  if (!S_ISDIR (st.st_mode)) {
    image_set_error (ENOTDIR, "clone folder %s: not a directory", dir);
    return -1;
  }
  if (confine_rebuild (r) == -1)
    return -1;
  if (scan_clone_folder (r, r->clone_dir, NULL) == -1)
    return -1;
  for (i = 0; i < r->nbases; i++)
    if (r->bases[i].tmpl && template_dir (r, r->bases[i].tmpl) == -1)
      return -1;
  return 0;
}

int
registry_clone (struct registry *r, const char *name, const char *base,
                const char *format)
{
  struct clone_base b = { 0 };
  CLEANUP_FREE char *file = NULL;
  const char *fmt = format ? format : "qcow2";
  int ret;

  if (r->clone_dir == NULL) {
    image_set_error (EINVAL, "clone '%s': no clone folder (--clone-dir)",
                     name);
    return -1;
  }
  if (strchr (name, '/') || !component_ok (name, strlen (name)) ||
      strlen (name) > REGISTRY_CLONE_NAME_MAX) {
    image_set_error (EINVAL, "clone '%.64s': a name is 1 to 200 bytes of "
                     "[A-Za-z0-9._-], no leading dot", name);
    return -1;
  }
  if (reg_known (r, name, strlen (name))) {
    image_set_error (EEXIST, "export name '%s' is taken", name);
    return -1;
  }
  if (asprintf (&file, "%s.%s", name, fmt) == -1) {
    file = NULL;
    image_set_error (ENOMEM, "out of memory");
    return -1;
  }
  if (base_read (&b, base) == -1) {
    base_clear (&b);
    return -1;
  }
  ret = clone_add (r, name, r->clone_dir, file, fmt, &b, true);
  base_clear (&b);
  return ret;
}
