/* SPDX-License-Identifier: BSD-3-Clause */
/* The registry's private structures, one section per file.
 *
 * Locks: r->open_lock serialises opens (taken first, never while holding
 * r->lock); r->lock guards both tables and every field marked "lock".
 * No image call that may take long runs with r->lock held, except the
 * header peeks of a directory scan.
 */
#ifndef COWBD_EXPORTS_INTERNAL_H
#define COWBD_EXPORTS_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "registry.h"

/* The NBD protocol's limit on names and descriptions. */
#define REG_MAX_NAME 4096

/* One open host file (files.c). */
struct reg_file {
  struct image_file_id id;
  struct image *img;
  unsigned refs;                /* lock: exports holding it + images
                                   reading it as their backing file */
  unsigned backing_refs;        /* lock: of refs, the images */
  bool closing;                 /* lock: the reaper is closing it */
  uint64_t idle_deadline;       /* lock: ms (monotonic), when refs == 0 */
  struct reg_file *next;
};

struct registry_export {
  struct registry *reg;
  char *name;
  char *path;
  bool from_dir;                /* made by a scan of the directory */
  bool removed;                 /* lock: out of the table */
  bool bad;                     /* dir: its header could not be read */
  bool seen;                    /* dir: found by the scan in progress */
  bool clone;                   /* an overlay of clone.c (not a default) */
  char *format;                 /* its own format, NULL: cfg.format */
  bool force_ro;                /* added read-only (registry_add_with) */
  bool trusted;                 /* a clone of a base the operator named */
  /* From the header (scan.c). */
  struct image_file_id id;
  bool has_backing;
  struct image_file_id backing_id;
  int64_t mtime_ns;             /* with id and fsize: did it change? */
  int64_t fsize;
  uint64_t size;
  uint32_t cluster_size;
  char *desc;                   /* without ", read-only" */
  char *fmt_name;               /* the header's format */
  char *backing_path;           /* resolved backing file, or NULL */
  /* In use. */
  unsigned refs;                /* lock */
  struct reg_file *file;        /* lock: while refs > 0 */
  bool readonly;
  char *desc_full;              /* with ", read-only" where it applies */
  struct registry_export *hnext; /* name hash chain */
};

struct name_table {
  struct registry_export **b;
  size_t nb, n;
};

struct registry {
  struct registry_config cfg;
  pthread_mutex_t lock;
  pthread_mutex_t open_lock;
  pthread_cond_t cond;          /* a file closed; the reaper's wake-up */
  struct image_backing_cache cache;

  struct name_table names;      /* lock: every export in the table */
  struct registry_export **fixed; /* lock: registry_add order */
  size_t nfixed, cap_fixed;
  struct registry_export **dirv; /* lock: the directory's, by name */
  size_t ndir, cap_dir;
  char *dir;
  int64_t dir_mtime_ns;         /* lock: as of the last scan */
  const char **dir_dirs;        /* { dir, cfg.backing_dirs..., NULL }:
                                   where the directory's exports' backing
                                   files may be */

  /* Clones on demand (clone.c): set up before serving, then fixed. */
  struct clone_base *bases;
  size_t nbases;
  char *clone_dir;
  char **clone_confine;         /* { clone_dir, each base's directory,
                                   NULL }: where a clone's backing files
                                   may be (reg_backing_dirs) */
  size_t pending_clones;        /* lock: being created, counted in the cap */

  struct reg_file *files;       /* lock */
  char *close_error;            /* lock: the first failed close (an idle
                                   one's too), for registry_free */
  pthread_t reaper;
  bool reaper_running, stopping; /* lock */
};

/* A base of clones on demand: names "TEMPLATE/NAME" (or plain "NAME"
 * for the base without a template) get an overlay of it. */
struct clone_base {
  char *tmpl;                   /* NULL: the default base */
  char *path;                   /* absolute */
  char *format;
  uint64_t size;
  struct image_file_id id;
};

/* ---- registry.c ---------------------------------------------------------- */

void reg_debug (struct registry *r, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));
/* What the operator must see (cfg.warn, else cfg.debug). */
void reg_warn (struct registry *r, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));
void reg_export_free (struct registry_export *e);
/* Takes e out of the table (lock held); frees it if no one holds it. */
void reg_export_unlink (struct registry *r, struct registry_export *e);
/* True if some export of the table names id as its backing file. */
bool reg_is_known_backing (struct registry *r, const struct image_file_id *id);
/* registry_add_with; clone: a clone's (counted in pending_clones). */
int reg_add (struct registry *r, const char *name, const char *path,
             const struct registry_add_opts *o, bool clone);
/* reg_add of a clone clone.c has just made over b, without peeking. */
int reg_add_made (struct registry *r, const char *name, const char *path,
                  const struct registry_add_opts *o,
                  const struct clone_base *b);
/* Whether a lookup of name finds an export (takes the lock). */
bool reg_known (struct registry *r, const char *name, size_t len);

/* ---- clone.c ------------------------------------------------------------- */

/* If clones are configured and name is unknown, makes it an export over
 * its overlay (found, or created atomically).  0 if there is nothing to
 * do or it is done; -1 after image_set_error (a bad name, a failed
 * create, --max-exports reached). */
int clone_ensure (struct registry *r, const char *name, size_t len);
bool clone_is_base (struct registry *r, const struct image_file_id *id);
void clone_free_all (struct registry *r);
/* Where e's backing files may come from (image.h, backing_dirs). */
const char *const *reg_backing_dirs (const struct registry *r,
                                     const struct registry_export *e);

/* ---- scan.c -------------------------------------------------------------- */

struct registry_export *names_find (struct name_table *t, const char *name,
                                    size_t len);
int names_insert (struct name_table *t, struct registry_export *e);
void names_remove (struct name_table *t, struct registry_export *e);
/* Reads e->path's header: size, description, identities.  -1 after
 * image_set_error.  force_share: the file may be open here already. */
int scan_peek (struct registry *r, struct registry_export *e);
/* What scan_peek would read of an overlay image_create has just made
 * with these parameters (default cluster size), without reading it. */
int scan_fill_made (struct registry_export *e, const char *format,
                    uint64_t size, const char *backing,
                    const struct image_file_id *backing_id);
/* Directory mode (lock held): rescans (always, or only if the
 * directory's modification time changed). */
int scan_dir (struct registry *r, bool always);
/* The directory's export name (lock held), added if the file exists
 * and has not been scanned yet; NULL if none. */
struct registry_export *scan_dir_lookup (struct registry *r,
                                         const char *name, size_t len);

/* ---- files.c -------------------------------------------------------------- */

/* The open file at path, opened if needed (read-only if readonly, or
 * if it is a known backing file), its chain confined to backing_dirs
 * (NULL: trusted).  Called with open_lock held and lock not held.  NULL
 * after image_set_error. */
struct reg_file *files_acquire (struct registry *r, const char *path,
                                bool readonly, const char *format,
                                bool as_backing,
                                const char *const *backing_dirs);
/* Drops a reference (lock held). */
void files_release (struct registry *r, struct reg_file *f,
                    bool as_backing);
/* The engine's backing cache callbacks. */
struct image *files_cache_get (void *opaque, const char *path,
                               const struct image_open_opts *opts);
void files_cache_put (void *opaque, struct image *img);
/* Stops the reaper and closes every file (nothing may hold one).  -1 if
 * a close failed. */
int files_close_all (struct registry *r);

#endif /* COWBD_EXPORTS_INTERNAL_H */
