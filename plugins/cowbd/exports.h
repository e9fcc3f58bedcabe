/* SPDX-License-Identifier: BSD-3-Clause */
/* The plugin's side of the export registry (exports/registry.h), which
 * decides which engine image serves which export name.
 *
 * file= mode has one export, the empty name (any name the client asks for
 * gets it, as with nbdkit's file plugin).  dir= mode has one export per
 * regular file of the directory that the engine can open, named by the
 * file name.  With clone-from= (alone or with dir=), an unknown name
 * becomes a new overlay in clone-dir= (registry.h, "clones").
 *
 * Each export's image is opened by the first connection that asks for
 * it (lazily, because only .open learns whether nbdkit runs with -r: a
 * read-only server must never write the file, not even the automatic
 * repair of an image left needing a check), shared by every connection,
 * and closed a little after the last one leaves.  get_ready opens a
 * file= image read-only once, only to refuse bad input at start-up.
 */
#ifndef COWBD_PLUGIN_EXPORTS_H
#define COWBD_PLUGIN_EXPORTS_H

#include <stdbool.h>
#include <stdint.h>

#include "image.h"
#include "registry.h"

struct nbdkit_exports;

/* What config_complete parsed; strings owned by the caller and valid for
 * the life of the plugin. */
struct exports_config {
  const char *file;             /* absolute path, or NULL */
  const char *dir;              /* absolute path, or NULL */
  const char *format;           /* "raw", "qed"...; NULL probes */
  uint64_t cache_size;          /* 0: the engine's default */
  /* clone-from=[TEMPLATE=]BASE (bases absolute), clone-dir=, max-exports= */
  const char *const *clone_tmpl; /* NULL entries: the default base */
  const char *const *clone_base;
  size_t nclones;
  const char *clone_dir;
  size_t max_exports;
  const char *const *backing_dirs; /* backing-dir=, NULL if none */
  unsigned remote_timeout_ms;   /* 0: the engine's default */
  const char *base_cache_dir;   /* base-cache=, or NULL */
  uint64_t base_cache_size;     /* base-cache-size=, 0: no bound */
};

/* get_ready: records cfg and checks it (file= mode: the image opens;
 * dir= mode: DIR is a readable directory).  -1 after nbdkit_error. */
int exports_init (const struct exports_config *cfg);

/* .open: a reference to the export called name, opened if no connection
 * has it open (read-only if readonly, else read-write, falling back to
 * read-only when the file cannot be written or is a backing file).
 * NULL after nbdkit_error and nbdkit_set_error. */
struct registry_export *exports_get (const char *name, bool readonly);
/* .close: gives the reference back. */
void exports_put (struct registry_export *exp);

/* .list_exports: adds every export with its description.  -1 after
 * nbdkit_error. */
int exports_list (struct nbdkit_exports *list);

/* .default_export: the name served to a client asking for "": "" in
 * file= mode, the first export name in sorted order in dir= mode, NULL if
 * there is none.  The string lives until nbdkit exits or the connection
 * closes (nbdkit_strdup_intern). */
const char *exports_default (void);

/* The one place where engine errors become nbdkit errors: the engine's
 * one-line message to nbdkit_error, its errno (already the one NBD names)
 * to nbdkit_set_error.  Returns -1. */
int engine_error (void);

/* .cleanup: flushes and closes every open image.  Idempotent. */
void exports_close_all (void);

#endif /* COWBD_PLUGIN_EXPORTS_H */
