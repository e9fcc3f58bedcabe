/* SPDX-License-Identifier: BSD-3-Clause */
/* The plugin's adapter to the export registry: nbdkit's callbacks for
 * exports become registry calls, and the registry's errors (reported as
 * the engine's) become nbdkit errors.  The policy (file identity,
 * aliases, shared backing files, read-only bases) lives in exports/.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "errno-nbd.h"
#include "exports.h"

static struct registry *reg;
static bool file_mode;

/* nbdkit sends an errno it has no NBD name for as EINVAL, which tells
 * the client its request was wrong: the engine's other errnos (a remote
 * base's ETIMEDOUT, say) are I/O errors to the client, as in cowbd. */
static int
client_errno (int e)
{
  return errno_has_nbd_name (e) ? e : EIO;
}

int
engine_error (void)
{
  nbdkit_error ("%s", image_error ());
  nbdkit_set_error (client_errno (image_errno ()));
  return -1;
}

static void
registry_debug (const char *msg)
{
  nbdkit_debug ("%s", msg);
}

/* nbdkit has no level between debug and error. */
static void
registry_warn (const char *msg)
{
  nbdkit_error ("warning: %s", msg);
}

/* file= mode: refuse a bad image (or one another process writes: this
 * open takes the locks of a reader) now, while nbdkit can still exit with
 * the message; the serving open comes with the first connection. */
static int
check_file (const struct exports_config *c)
{
  struct image_open_opts o = {
    .format = c->format,
    .cache_size = c->cache_size,
    .remote_timeout_ms = c->remote_timeout_ms,
    .base_cache_dir = c->base_cache_dir,
    .base_cache_size = c->base_cache_size,
    .flags = IMAGE_OPEN_READONLY,
    .backing_dirs = c->backing_dirs,
  };
  struct image *img = image_open (c->file, &o);

  if (img == NULL)
    return engine_error ();
  image_close (img);
  return 0;
}

static int
check_dir (const char *dir)
{
  struct stat st;

  if (stat (dir, &st) == -1) {
    nbdkit_error ("dir=%s: %m", dir);
    return -1;
  }
  if (!S_ISDIR (st.st_mode)) {
    nbdkit_error ("dir=%s: not a directory", dir);
    return -1;
  }
  return 0;
}

/* clone-from= and clone-dir= into the registry. */
static int
add_clones (const struct exports_config *c)
{
  size_t i;

  for (i = 0; i < c->nclones; i++)
    if (registry_clone_base (reg, c->clone_tmpl[i], c->clone_base[i]) == -1)
      return -1;
  if (c->clone_dir && registry_clone_dir (reg, c->clone_dir) == -1)
    return -1;
  return 0;
}

int
exports_init (const struct exports_config *c)
{
  struct registry_config rc = {
    .format = c->format,
    .cache_size = c->cache_size,
    .remote_timeout_ms = c->remote_timeout_ms,
    .base_cache_dir = c->base_cache_dir,
    .base_cache_size = c->base_cache_size,
    .rw_fallback = true,
    .debug = registry_debug,
    .max_exports = c->max_exports,
    .warn = registry_warn,
    .backing_dirs = c->backing_dirs,
  };

  if (c->dir ? check_dir (c->dir) == -1
      : c->file ? check_file (c) == -1 : 0)
    return -1;
  exports_close_all ();
  reg = registry_new (&rc);
  if (reg == NULL)
    return engine_error ();
  file_mode = c->file != NULL;
  if (file_mode ? registry_add (reg, "", c->file) == -1
      : c->dir && registry_set_dir (reg, c->dir) == -1)
    return engine_error ();
  if (add_clones (c) == -1)
    return engine_error ();
  return 0;
}

struct registry_export *
exports_get (const char *name, bool readonly)
{
  struct registry_export *e;

  if (file_mode)
    name = "";                  /* one file, whatever the name asked */
  e = registry_get (reg, name, strlen (name), readonly);
  if (e == NULL) {
    engine_error ();
    return NULL;
  }
  return e;
}

void
exports_put (struct registry_export *exp)
{
  registry_put (exp);
}

static int
add_one (void *opaque, const char *name, const char *description)
{
  return nbdkit_add_export (opaque, name, description);
}

int
exports_list (struct nbdkit_exports *list)
{
  int r = registry_list (reg, add_one, list);

  if (r == -1 && image_errno ())
    nbdkit_error ("%s", image_error ());
  return r;
}

const char *
exports_default (void)
{
  char *name = registry_default (reg);
  const char *r;

  if (name == NULL)
    return NULL;
  r = nbdkit_strdup_intern (name);
  free (name);
  return r;
}

void
exports_close_all (void)
{
  if (reg && registry_free (reg) == -1)
    nbdkit_error ("%s", image_error ());
  reg = NULL;
}
