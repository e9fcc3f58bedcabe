/* SPDX-License-Identifier: BSD-3-Clause */
/* The export registry: export names to shared engine images, for both
 * front ends (the server cowbd and nbdkit-cowbd-plugin).  Knows nothing
 * about sockets or NBD.
 *
 * Two tables:
 *
 *   exports  name -> path, what LIST and INFO need (size, description,
 *            the identity of the file and of its backing file), and a
 *            count of the connections holding it.  Kept for every
 *            export, open or idle: an idle export costs a few hundred
 *            bytes and no descriptor.
 *   files    (device, inode) -> one engine image.  Every host file is
 *            opened once per process: aliases (two names, a symbolic
 *            link, ./x) share one image, and a backing file is one
 *            image read by every overlay above it (the engine asks the
 *            registry for it through its backing cache, image.h).
 *
 *   export "c1" --+                      +--> file c1.qcow2 --+
 *   export "a"  --+--> file golden.qcow2 <-- backing of ------+
 *   export "b"  -----> (idle: no file)
 *
 * Policy: a file that is the backing file of any export the registry
 * knows, or of any open image, is opened read-only (writes get EPERM
 * through NBD); an overlay whose backing file is open for writing is
 * refused (EBUSY).  Files whose last user left are closed after
 * idle_ms by a reaper thread (started on first need), so a burst of
 * connections does not reopen the image each time.
 *
 * Errors are reported as the engine's: a call that fails returns -1 or
 * NULL and leaves image_error () and image_errno () set (one line naming
 * the file or the export).
 *
 * Threads: every call is thread-safe.  registry_get may open images,
 * which can take long (a repair after a crash): never call it on an
 * event loop.  Opens are serialised (one at a time per registry, and
 * always without the table lock held), so concurrent first connections
 * to one file open it once.
 *
 * Runtime control (for a control socket): registry_add and
 * registry_remove work at any time.  A removed export disappears from
 * lookups and LIST at once; connections holding it keep it alive until
 * they put it (REGISTRY_REMOVE_SAFE refuses while any is held;
 * REGISTRY_REMOVE_HARD removes anyway and the front end cuts the
 * connections for which registry_export_removed is true).
 */
#ifndef COWBD_REGISTRY_H
#define COWBD_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image.h"

struct registry;
struct registry_export;

struct registry_config {
  const char *format;           /* "raw", "qed", "qcow2"; NULL probes */
  uint64_t cache_size;          /* metadata cache per image; 0: default */
  unsigned remote_timeout_ms;   /* remote backing images; 0: default */
  const char *base_cache_dir;   /* their cache on this host, or NULL */
  uint64_t base_cache_size;     /* its bound; 0: none */
  bool readonly;                /* open every export read-only */
  /* true: an export whose file cannot be opened for writing (permissions,
   * read-only file system) is served read-only; false: that is an
   * error. */
  bool rw_fallback;
  /* true: descriptions of read-only exports end in ", read-only". */
  bool describe_readonly;
  unsigned idle_ms;             /* close after idle; 0: REGISTRY_IDLE_MS */
  size_t max_exports;           /* cap on registry_add and clones; 0: none */
  /* Backing file confinement (image.h, backing_dirs): a NULL-terminated
   * list of directories inside which every backing file of every export
   * must resolve, else the export is refused (a directory's is not
   * listed).  An export of the directory (registry_set_dir) may also use
   * the directory itself (and only it, if this is NULL), and so may its
   * entries that are symbolic links; one registry_add made is trusted if
   * this is NULL (the user named it).  Must outlive the registry. */
  const char *const *backing_dirs;
  void (*debug) (const char *msg); /* what happens, for -v; may be NULL */
  /* What the operator must see at the default log level (an export
   * served read-only because its file cannot be opened for writing, and
   * why); NULL: debug. */
  void (*warn) (const char *msg);
};
#define REGISTRY_IDLE_MS 2000

/* NULL after image_set_error. */
struct registry *registry_new (const struct registry_config *cfg);
/* Closes every image (overlays before their bases) and frees the
 * registry.  Exports still held are closed too: call it only when no
 * connection is left.  -1 if some close failed (each said why through
 * cfg->debug and image_error). */
int registry_free (struct registry *r);

/* ---- the table ---------------------------------------------------------- */

/* Adds export name for the image at path (not opened: only its header
 * is read, for LIST and for the backing-file policy).  "" is allowed
 * (the default export).  EEXIST if the name is taken, ENAMETOOLONG past
 * 4096 bytes, or the engine's error if the header cannot be read. */
int registry_add (struct registry *r, const char *name, const char *path);

/* registry_add with an export's own format (NULL: the registry's) and
 * read-only flag.  ENOSPC past max_exports. */
struct registry_add_opts {
  const char *format;
  bool readonly;
  /* A clone whose base the operator named (the control socket's
   * clone-create): not confined like clones made on demand. */
  bool trusted;
};
int registry_add_with (struct registry *r, const char *name,
                       const char *path, const struct registry_add_opts *o);

/* Directory mode: every regular file of dir that the engine can open is
 * an export named by its file name (after the exports registry_add
 * made, which win a name clash).  The directory is scanned now and
 * again at each registry_list, at lookups of unknown names, and before
 * opening a file for writing when its modification time changed. */
int registry_set_dir (struct registry *r, const char *dir);

enum registry_remove_mode {
  REGISTRY_REMOVE_SAFE,         /* EBUSY while a connection holds it */
  REGISTRY_REMOVE_HARD,         /* remove now; holders are told through
                                   registry_export_removed */
};
int registry_remove (struct registry *r, const char *name,
                     enum registry_remove_mode mode);

/* Number of exports (dir= exports as of the last scan). */
size_t registry_count (struct registry *r);

/* Calls fn for every export in order (registry_add order, then the
 * directory's in name order), with its description ("qcow2, 10 GiB,
 * backing golden.qcow2"), after rescanning the directory.  Stops at
 * fn's first non-zero return, which is returned. */
typedef int (*registry_list_fn) (void *opaque, const char *name,
                                 const char *description);
int registry_list (struct registry *r, registry_list_fn fn, void *opaque);

/* The name a client asking for "" gets: "" if such an export exists,
 * else the first in list order.  Malloc'd; NULL (ENOENT) if none. */
char *registry_default (struct registry *r);

/* True if export name (len bytes, not NUL-terminated; "" the default)
 * exists, without opening it. */
bool registry_exists (struct registry *r, const char *name, size_t len);

/* What NBD_OPT_INFO tells of an export, without opening it (from its
 * header, or from its open image).  readonly is what registry_get would
 * give a read-write client unless the open itself falls back. */
struct registry_info {
  char *name;                   /* malloc'd: the export's own name */
  char *description;            /* malloc'd */
  uint64_t size;
  uint32_t cluster_size;        /* 0 for raw */
  bool readonly;
};
/* -1 after image_set_error (ENOENT: no such export). */
int registry_info (struct registry *r, const char *name, size_t len,
                   struct registry_info *info);
void registry_info_free (struct registry_info *info);

/* Every export of the table with what a control socket shows, after
 * rescanning the directory: -1 after image_set_error. */
struct registry_entry {
  char *name, *path;
  char *format;                 /* the header's; NULL if unreadable */
  char *backing;                /* resolved backing file, or NULL */
  uint64_t size;
  unsigned connections;
  bool readonly;                /* as a read-write client would get it */
  char **dependents;            /* exports whose backing file this is */
  size_t ndependents;
};
int registry_entries (struct registry *r, struct registry_entry **v,
                      size_t *n);
void registry_entries_free (struct registry_entry *v, size_t n);

/* ---- clones (clone.c) ----------------------------------------------------
 *
 * Clones on demand: a client asking for an unknown export NAME (or
 * TEMPLATE/NAME) gets a new persistent qcow2 overlay DIR/NAME.qcow2 (or
 * DIR/TEMPLATE/NAME.qcow2) over the base given for it, created in
 * constant time (the base's header is read once, at set-up) and added
 * to the table; a later lookup, in this process or after a restart,
 * finds the same overlay.  Creation is atomic: a temporary file
 * ".NAME.qcow2.tmp-XXXXXX" in the same folder, synced, renamed without
 * replacing (the loser of a race for one name removes its temporary and
 * serves the winner's), then the folder synced.  Names: 1 to
 * REGISTRY_CLONE_NAME_MAX bytes of [A-Za-z0-9._-], no leading dot, one
 * '/' only after a known template; anything else is ENOENT with a
 * message naming it, and touches no file.
 */
#define REGISTRY_CLONE_NAME_MAX 200

/* Splits the value of --clone-from / clone-from=, [TEMPLATE=]BASE:
 * returns where BASE starts and sets *tmpl_len to TEMPLATE's length (0:
 * no template).  A '=' after a '/' is part of the file name. */
const char *registry_clone_from_split (const char *arg, size_t *tmpl_len);

/* Adds a base: tmpl NULL for names without a template.  Its header is
 * read now (size, format).  EEXIST for a template given twice. */
int registry_clone_base (struct registry *r, const char *tmpl,
                         const char *base);
/* The folder of the overlays (after every base): makes each template's
 * folder, removes temporaries a crash left, and adds the overlays
 * (NAME.qcow2, NAME.qed, TEMPLATE/NAME.qcow2...) a previous run made, so
 * that they are listed and count under max_exports from the start. */
int registry_clone_dir (struct registry *r, const char *dir);
/* clone-create: a new overlay DIR/NAME.FORMAT over base (a file; NULL
 * format: qcow2), added as export name.  EEXIST if the name or the file
 * is taken; EINVAL without registry_clone_dir. */
int registry_clone (struct registry *r, const char *name, const char *base,
                    const char *format);

/* ---- connections ------------------------------------------------------- */

/* Takes a reference to export name (len bytes; "" the default), opening
 * its file if no one has it open: read-only if readonly, the registry
 * is read-only, or the file is a known backing file.  Blocks for the
 * open: never on an event loop.  NULL after an error (ENOENT: no such
 * export). */
struct registry_export *registry_get (struct registry *r, const char *name,
                                      size_t len, bool readonly);
/* Gives the reference back.  The last one lets the file go idle. */
void registry_put (struct registry_export *e);

/* What a reference shows; valid while it is held. */
const char *registry_export_name (const struct registry_export *e);
struct image *registry_export_image (const struct registry_export *e);
uint64_t registry_export_size (const struct registry_export *e);
bool registry_export_readonly (const struct registry_export *e);
const char *registry_export_description (const struct registry_export *e);
/* true once registry_remove took it out of the table. */
bool registry_export_removed (const struct registry_export *e);

#endif /* COWBD_REGISTRY_H */
