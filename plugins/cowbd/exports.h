/* SPDX-License-Identifier: BSD-3-Clause */
/* The plugin's export table: which engine image serves which export name.
 *
 * file= mode has one export, the empty name (any name the client asks for
 * gets it, as with nbdkit's file plugin).  dir= mode has one export per
 * regular file of the directory that the engine can open, named by the
 * file name.
 *
 * Each export's image is opened once, lazily, by the first connection
 * that asks for it, and is then shared by every connection until nbdkit
 * stops (cleanup closes it: flush, mark clean).  Lazily, because only
 * .open learns whether nbdkit runs with -r: a read-only server must never
 * write the file, not even the automatic repair of an image left needing a
 * check.  get_ready opens a file= image read-only once, only to refuse bad
 * input at start-up.
 */
#ifndef COWBD_PLUGIN_EXPORTS_H
#define COWBD_PLUGIN_EXPORTS_H

#include <stdbool.h>
#include <stdint.h>

#include "image.h"

struct nbdkit_exports;

/* What config_complete parsed; strings owned by the caller and valid for
 * the life of the plugin. */
struct exports_config {
  const char *file;             /* absolute path, or NULL */
  const char *dir;              /* absolute path, or NULL */
  const char *format;           /* "raw", "qed"...; NULL probes */
  uint64_t cache_size;          /* 0: the engine's default */
};

/* One served export. */
struct export {
  char *name;                   /* "" in file= mode, else the file name */
  struct image *img;            /* shared by every connection */
  char *description;            /* "qed, 10 GiB, backing base.qed" or NULL */
};

/* get_ready: records cfg and checks it (file= mode: the image opens;
 * dir= mode: DIR is a readable directory).  -1 after nbdkit_error. */
int exports_init (const struct exports_config *cfg);

/* .open: the export called name, opened if this is its first use
 * (read-only if readonly, else read-write, falling back to read-only when
 * the file cannot be written).  NULL after nbdkit_error and
 * nbdkit_set_error. */
struct export *exports_get (const char *name, bool readonly);

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
