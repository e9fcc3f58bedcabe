/* SPDX-License-Identifier: BSD-3-Clause */
/* What the format drivers share: the image object, the driver table and
 * the helpers of errors.c, chain.c, extents.c, create.c and hostfile.c.
 * Not for use outside formats/.
 *
 * Layering: image.c validates every request (range, read-only) before a
 * driver sees it, so drivers may assume offset + count <= size and a
 * writable image for writes.  Drivers read unallocated ranges through
 * chain_read_backing and never touch the backing image's file directly.
 */
#ifndef COWBD_FORMATS_INTERNAL_H
#define COWBD_FORMATS_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "image.h"
#include "source.h"

/* ---- locks: the rule and its exceptions ------------------------------ */

/* Audited for issue 17 (every function of formats/ that locks):
 *
 * 1. A function that takes a lock releases it before it returns, on
 *    every path: ACQUIRE_LOCK_FOR_CURRENT_SCOPE, or a lock/unlock pair
 *    in one body (early returns unlock too).  No function releases a
 *    lock it did not take.  A function that needs a lock its caller
 *    holds says "Called with X held" and leaves X held.  The exceptions,
 *    each named so:
 *    - pthread_cond_wait/timedwait in a waiting loop: released and
 *      taken again within the call;
 *    - cow_assert_not_held (cow.c, debug builds): unlocks only what its
 *      own trylock took, or tries to unlock to ask the error-checking
 *      mutex who owns it.
 * 2. No fdatasync or fsync of an image's file with the image's main lock
 *    (struct cow's lock, cow.h) held: every one goes through
 *    host_sync_image (cow_sync and cow_fdatasync in the cluster formats),
 *    which asserts it in debug builds (img->main_lock).  Syncs under
 *    writeback_lock or header_lock are allowed: readers never wait for
 *    those, and a write only when it needs the change they guard (a new
 *    table, the dirty mark).  Other
 *    files: create.c syncs a file no one has opened yet; the base cache
 *    syncs in its flusher with no lock held, at close after the flusher
 *    has stopped, and when it empties a stale cache file while opening
 *    it, before anyone shares it (basecache-file.c); a backing image's
 *    source is synced by source.c under no engine lock.
 * 3. Lock order: writeback_lock, then header_lock, then the main lock
 *    (cow.h); the base cache's own order is in basecache.c.
 */

/* Debug builds: aborts if the calling thread holds *m (cow.c). */
void cow_assert_not_held (pthread_mutex_t *m);

/* ---- the driver table ------------------------------------------------ */

/* What a driver knows about one run of guest clusters. */
enum drv_kind {
  DRV_UNALLOCATED,              /* falls through to the backing image */
  DRV_ZERO,                     /* allocated, reads as zeros */
  DRV_DATA,                     /* allocated data */
};

struct drv_status {
  enum drv_kind kind;
  uint64_t length;              /* >0, <= the count asked for */
  int64_t host_offset;          /* file offset of the run, or -1 */
  bool compressed;
  /* The driver already consulted the host file's holes (raw): image.c
   * must not refine DRV_DATA through SEEK_DATA again. */
  bool host_checked;
  /* In, set by the caller: only whether the run starts with data matters
   * (chain_backing_is_zero).  A driver may then answer DRV_DATA for the
   * whole count without finding where the data ends, which on tmpfs costs
   * a walk over every page up to the next hole (SEEK_HOLE). */
  bool quick;
};

/* What image_get_info learns from a driver; image.c fills the rest. */
struct drv_info {
  uint32_t cluster_size;        /* 0: the format has no clusters */
  bool dirty;                   /* QED NEED_CHECK / qcow2 dirty bit */
  struct image_info_specific specific;
};

struct driver {
  const char *name;
  /* Extents split a data run where the host file has a hole and mark that
   * part as reading zeros.  qemu does so for qcow2 (its driver hands the
   * question to the file layer), not for QED: we follow it, so that
   * `map` agrees.  raw answers from the host file itself. */
  bool refine_host_holes;

  /* Returns true if the first bytes of a file (len may be short) carry
   * this format's magic.  raw has no probe: it is what is left. */
  bool (*probe) (const uint8_t *buf, size_t len);

  /* Reads and validates the header, fills img->size and the backing
   * fields, and (read-write, needing a check) repairs the image.  The
   * backing chain is opened by image.c afterwards. */
  int (*open) (struct image *img, const struct image_open_opts *opts);
  /* Writes back everything and marks the image clean (read-write opens);
   * frees img->priv.  Must free even when it fails. */
  int (*close) (struct image *img);

  int (*pread) (struct image *img, void *buf, size_t count, uint64_t offset);
  int (*pwrite) (struct image *img, const void *buf, size_t count,
                 uint64_t offset, unsigned flags);
  int (*zero) (struct image *img, uint64_t count, uint64_t offset,
               unsigned flags);
  int (*trim) (struct image *img, uint64_t count, uint64_t offset,
               unsigned flags);
  int (*flush) (struct image *img);
  /* Optional: as pread and pwrite, but fail with EAGAIN (changing
   * nothing) instead of waiting; see image_pread_nowait.  Absent: always
   * EAGAIN. */
  int (*pread_nowait) (struct image *img, void *buf, size_t count,
                       uint64_t offset);
  int (*pwrite_nowait) (struct image *img, const void *buf, size_t count,
                        uint64_t offset, unsigned flags);
  /* Status of [offset, offset + count): fills *st for a run starting at
   * offset. */
  int (*block_status) (struct image *img, uint64_t offset, uint64_t count,
                       struct drv_status *st);

  /* Optional (absent: no clusters, never dirty, nothing specific):
   * what image_get_info needs from the driver. */
  void (*get_info) (struct image *img, struct drv_info *di);
  /* Adds the metadata caches' figures to st (NULL: no cache). */
  void (*cache_stats) (struct image *img, struct image_stats *st);
  int (*check) (struct image *img, unsigned flags,
                struct image_check_result *result,
                image_report_fn report, void *opaque);
  int (*create) (const char *filename, const struct image_create_opts *opts);
  /* The format-specific create options create takes, ended by a NULL
   * name (NULL: none); create-opts.c. */
  const struct image_option *create_options;
  int (*set_backing) (struct image *img, const char *backing_file,
                      const char *backing_format);
  int (*make_empty) (struct image *img);
  /* Optional: sets the virtual size (image_resize has validated it,
   * shrinking allowed).  zero_new: the new part must be written as zeros
   * (a backing image would show through).  */
  int (*resize) (struct image *img, uint64_t size,
                 enum image_prealloc prealloc, bool zero_new);
  /* Optional: internal snapshots (image_snapshots).  Absent: none. */
  int (*list_snapshots) (struct image *img, image_snapshot_fn fn,
                         void *opaque);
  /* Optional: image_snapshot_create, _apply, _delete (qcow2). */
  int (*snapshot_create) (struct image *img, const char *name);
  int (*snapshot_apply) (struct image *img, const char *id_or_name);
  int (*snapshot_delete) (struct image *img, const char *name);
  /* Optional: image_amend (qcow2), the image writable: changes the
   * format's own options and calls amend_common for the rest. */
  int (*amend) (struct image *img, const struct image_create_opts *opts);
  /* Optional: image_write_compressed (qcow2); validated for range and
   * writability only. */
  int (*write_compressed) (struct image *img, const void *buf,
                           size_t count, uint64_t offset);
};

extern const struct driver raw_driver;
extern const struct driver qed_driver;
extern const struct driver qcow2_driver;

/* ---- the image object ------------------------------------------------ */

struct image {
  const struct driver *drv;
  void *priv;                   /* the driver's state */

  char *filename;               /* as the user named it */
  struct source *src;           /* the host file, or a remote export */
  int fd;                       /* src's local descriptor, or -1: for the
                                   fast paths only a local file has */
  bool readonly;
  /* The driver's main lock (cow_init sets it; NULL for raw, which has
   * none): host_sync_image asserts in debug builds that the syncing
   * thread does not hold it. */
  pthread_mutex_t *main_lock;
  uint64_t size;                /* virtual size, set by drv->open */
  uint64_t backing_read_bytes;  /* image_get_stats; __atomic, relaxed */
  /* Calls of host_grow_file and host_trim_file that changed the file's
   * length, and the length before the last growth: a cluster format's
   * flush compares them with what its last sync covered (cow.c).  Set
   * with the driver's lock held; __atomic. */
  uint64_t length_changes;
  uint64_t grown_from;

  /* Backing file: drv->open sets the name from the header (and the
   * format if the header names one); image.c resolves and opens it. */
  char *backing_filename;       /* as stored */
  char *backing_format;         /* stored or probed; NULL before probe */
  char *full_backing_filename;  /* resolved against our directory */
  struct image *backing;        /* NULL: none, or IMAGE_OPEN_NO_BACKING */
  /* Where backing came from: NULL if this image opened it (and closes
   * it), else the cache it goes back to (put) at close. */
  const struct image_backing_cache *backing_cache;
  unsigned depth;               /* 0 for the top image of a chain */
  /* Opened with no backing_dirs policy: whoever named it chose its
   * chain, which image_check_confined then trusts (confine.c). */
  bool chain_trusted;

  /* Whether the host file may have holes: unknown until first asked
   * (host_dense: one SEEK_HOLE from data_start, which drivers set
   * in open to where the format's data begins); cleared by whoever
   * punches or zeroes in place (host_may_have_holes).  While the
   * file is dense, hole queries (SEEK_HOLE walks every page on tmpfs)
   * are skipped. */
  uint64_t data_start;
  int host_dense;               /* -1 unknown, -2 being found out, 0 may
                                   have holes, 1 dense; __atomic */

  /* How I/O on the host file can avoid blocking (host_nowait_init). */
  bool host_in_memory;          /* tmpfs, ramfs: plain I/O never waits */
  bool chain_in_memory;         /* so are all the backing images' */
  bool host_read_nowait;        /* RWF_NOWAIT reads work (until EOPNOTSUPP) */
  bool host_write_nowait;       /* RWF_NOWAIT writes work */

  /* A sync, or a write whose failure the error path cannot undo, failed
   * (sticky_set): the kernel may have dropped dirty pages, so no later
   * FLUSH or FUA may claim durability until the image is reopened.
   * __atomic; never cleared. */
  int io_failed;

  /* Set for a writable image whose format was probed and found raw:
   * writes that would change what the probe finds are refused
   * (probe.c). */
  struct probe_guard *guard;
};

/* A hole may exist in the host file now. */
static inline void
host_may_have_holes (struct image *img)
{
  __atomic_store_n (&img->host_dense, 0, __ATOMIC_RELAXED);
}

/* True if the host file is known to have no hole in its data area. */
bool host_dense (struct image *img);

/* ---- changes in flight (shared by the drivers) --------------------------- */

/* A run of guest clusters that an allocating write (or a change of table
 * entries) is working on.  Drivers keep a list of them under their lock;
 * another change of any of these clusters waits until the run is done,
 * so that allocation is serialised per cluster, not per image. */
struct inflight {
  uint64_t first, count;        /* guest cluster numbers */
  struct inflight *next;
};

/* The run of the list overlapping clusters [first, first + n), or NULL. */
static inline struct inflight *
inflight_find (struct inflight *list, uint64_t first, uint64_t n)
{
  struct inflight *a;

  for (a = list; a; a = a->next)
    if (a->first < first + n && first < a->first + a->count)
      return a;
  return NULL;
}

static inline void
inflight_add (struct inflight **list, struct inflight *a, uint64_t first,
              uint64_t n)
{
  *a = (struct inflight) { .first = first, .count = n, .next = *list };
  *list = a;
}

static inline void
inflight_remove (struct inflight **list, struct inflight *a)
{
  while (*list != a)
    list = &(*list)->next;
  *list = a->next;
}

/* ---- backing file confinement (confine.c) ------------------------------- */

/* 0 if dirs is NULL or path (image's backing file, named asked in its
 * header) resolves inside one of dirs; else -1 after error_set. */
int confine_check (const char *image, const char *asked, const char *path,
                   const char *const *dirs);

/* ---- errors (errors.c) ------------------------------------------------- */

/* Records errnum and a printf-style message for image_error(); returns -1
 * so that drivers can write `return error_set (...)`. */
int error_set (int errnum, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));
/* The same, prefixed with "<img->filename>: ". */
int error_file (struct image *img, int errnum, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));
/* "<file>: <what>: <strerror (errno)>" from the current errno. */
int error_syscall (struct image *img, const char *what);
/* Puts prefix before the current message (same errno); returns -1. */
int error_prefix (const char *prefix);
/* EAGAIN in errno and for image_errno (no message: the blocking call the
 * caller falls back to says what went wrong); returns -1. */
int error_again (void);
/* The thread's error, kept across a cleanup that may fail too. */
#define ERROR_MSG_SIZE 1024
struct error_saved {
  int errnum;
  char msg[ERROR_MSG_SIZE];
};
void error_save (struct error_saved *e);
void error_restore (const struct error_saved *e);
/* A check's finding, formatted, to report (which may be NULL). */
void check_report (image_report_fn report, void *opaque,
                   const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

/* ---- request validation (image.c) ------------------------------------- */

/* The sticky error (img->io_failed): drivers call sticky_set where a sync
 * or a metadata write fails; image.c refuses every later flush and FUA
 * request with sticky_check (EIO).  Reads go on. */
void sticky_set (struct image *img);
int sticky_check (struct image *img);
static inline bool
sticky_failed (struct image *img)
{
  return __atomic_load_n (&img->io_failed, __ATOMIC_ACQUIRE) != 0;
}

/* Fails with errnum and a message naming op if [offset, offset + count)
 * does not lie inside the image. */
int request_in_range (struct image *img, uint64_t count, uint64_t offset,
                      int errnum, const char *op);

/* ---- backing reads (chain.c) ------------------------------------------- */

/* Reads [offset, offset + count) of img's backing image into buf, zeros
 * where there is no backing image or past its end.  Never fails on a
 * range past the backing image's end. */
int chain_read_backing (struct image *img, void *buf, size_t count,
                        uint64_t offset);

/* The fill of part of a new cluster without a copy through user space:
 * [offset, offset + len) of img's backing chain written into img's file
 * at dest, run by run: data copied with copy_file_range where its owner
 * is a local file (through memory otherwise: remote or compressed), and
 * nothing where it reads as zeros, which dest must already read as (a
 * hole of the grown file).  *copied: whether any data was written.
 * One walk down the chain per run: the status that says where the data
 * is also says where it reads. */
int chain_copy_fill (struct image *img, uint64_t offset, uint64_t len,
                     uint64_t dest, bool *copied);

/* True if [offset, offset + count) of img's backing image is known to
 * read as zeros (no backing image, past its end, holes or zero clusters);
 * false if it may hold data.  Errors count as "may hold data". */
bool chain_backing_is_zero (struct image *img, uint64_t offset,
                            uint64_t count);

/* ---- the host file (hostfile.c) ---------------------------------------- */

/* Full-length positional I/O, retrying short transfers and EINTR.  A read
 * past the end of the file fills the rest with zeros.  Return 0 or -1 with
 * errno set (no message: callers say what they were doing). */
int host_pread (int fd, void *buf, size_t count, uint64_t offset);
int host_pwrite (int fd, const void *buf, size_t count, uint64_t offset);
/* Writes every buffer of iov (which it modifies). */
struct iovec;
int host_pwritev (int fd, struct iovec *iov, int iovcnt, uint64_t offset);
/* Copies count bytes of fd_in at off_in to fd_out at off_out inside the
 * kernel (copy_file_range: no copy through user space, a reflink where
 * the filesystem shares blocks).  Bytes past the end of fd_in are not
 * written: fd_out must already read as zeros there.  0, or -1 with errno
 * set; ENOTSUP when the kernel cannot copy between these files and
 * nothing was written (copy through memory instead). */
int host_copy_range (int fd_in, uint64_t off_in, int fd_out,
                     uint64_t off_out, uint64_t count);
/* A buffer of zeros, never written, for zero fills. */
#define HOST_ZEROS_SIZE (1U << 20)
extern uint8_t host_zeros[HOST_ZEROS_SIZE];
/* Writes count zero bytes, using fallocate where the filesystem can, else
 * plain writes of a zero buffer.  May deallocate (punch) if may_punch. */
int host_write_zeroes (int fd, uint64_t count, uint64_t offset,
                       bool may_punch);
/* Zeros a range with fallocate only: -1 with errno EOPNOTSUPP where the
 * filesystem cannot (the caller then decides whether slow zeroing is
 * acceptable). */
int host_write_zeroes_fast (int fd, uint64_t count, uint64_t offset);
/* Deallocates a range that must then read as zeros; -1 with errno
 * EOPNOTSUPP where the filesystem cannot. */
int host_punch_hole (int fd, uint64_t count, uint64_t offset);
/* fdatasync, retrying EINTR. */
int host_sync (int fd);
/* host_sync of img's file; a failure makes the image's error sticky.
 * Never with img->main_lock held (asserted in debug builds). */
int host_sync_image (struct image *img);
/* Host file size (or block device size). */
int host_file_size (int fd, uint64_t *size);
/* Non-blocking I/O on img's host file: EAGAIN (and nothing done, or for
 * a read, nothing usable) where it would wait. */
void host_nowait_init (struct image *img);
int host_pread_nowait (struct image *img, void *buf, size_t count,
                       uint64_t offset);
int host_pwrite_nowait (struct image *img, const void *buf, size_t count,
                        uint64_t offset);
/* Reads img's backing image without blocking, as chain_read_backing. */
int chain_read_backing_nowait (struct image *img, void *buf, size_t count,
                               uint64_t offset);

/* Hole status at offset of the host file: sets *is_data and *len, the
 * length (<= count) of the run of the same kind.  Past EOF is a hole.
 * With quick, a run of data is not followed to its end (*len = count):
 * only SEEK_DATA is used, which is cheap everywhere. */
int host_data_status (int fd, uint64_t offset, uint64_t count, bool quick,
                      bool *is_data, uint64_t *len);
/* True if the file has no hole from start to its end: one fstat where
 * in_memory (tmpfs) shows a block count that covers its length, else one
 * SEEK_HOLE. */
bool host_is_dense (int fd, uint64_t start, bool in_memory);

/* Allocates [offset, offset + length) of the file in chunks (and, with
 * write_zeros, writes zeros over it: preallocation=full), calling progress
 * between chunks; a non-zero return from progress stops with ECANCELED. */
int host_preallocate (int fd, uint64_t offset, uint64_t length,
                      bool write_zeros,
                      int (*progress) (void *, uint64_t, uint64_t),
                      void *opaque);

/* ---- QEMU-compatible image locks (lock.c) ------------------------------ */

/* Locks img's file (img->fd, img->readonly set) for an open with
 * open_flags (IMAGE_OPEN_FORCE_SHARE), as QEMU would; EBUSY if another
 * user's locks conflict.  The locks go with the descriptor. */
int lock_image (struct image *img, unsigned open_flags);
/* Locks an existing file about to be replaced by a create, as qemu-img
 * create does: refused (EBUSY) while anyone reads or writes it. */
int lock_for_create (int fd, const char *filename);

/* ---- the file's length ahead of its allocations (hostfile.c) ------------ */

/* Drivers append clusters at the end of the file (file_end) and keep the
 * host file's length (*length) ahead of it, grown by ftruncate in steps
 * of at least 1 MiB: new clusters then lie inside the file and read as
 * zeros (a hole) where nothing is written, with one ftruncate per step
 * instead of a write per allocation.  The length is kept at least half a
 * step past end (so that the allocation that grows the file lies in the
 * length before, cow.c); only what end needs must succeed.  Called with
 * the driver's lock. */
int host_grow_file (struct image *img, uint64_t *length, uint64_t end,
                    uint64_t cluster_size);
/* Cuts the file back to end where it was grown past it (a clean close).
 * Called with the driver's lock; the caller syncs after releasing it. */
int host_trim_file (struct image *img, uint64_t *length, uint64_t end);

/* ---- creating images (create.c) --------------------------------------- */

/* Opens filename for a driver's create: O_CREAT|O_TRUNC|O_RDWR. */
int create_new_file (const char *filename);
/* The end of every driver's create, once its metadata is written: the
 * file extended to `end`, [data, data + data_bytes) preallocated as
 * opts->prealloc asks (falloc, full, with progress), everything synced. */
int create_finish (int fd, const char *filename, uint64_t end,
                   uint64_t data, uint64_t data_bytes,
                   const struct image_create_opts *opts);
/* Opens the backing file a create names (resolved against filename's
 * directory, read-only, not its own backing chain) for its size and its
 * format's name (a static string).  Errors say "FILE: backing file: ...". */
int create_inspect_backing (const char *filename,
                            const struct image_create_opts *opts,
                            uint64_t *size, const char **format);

/* ---- format-specific create options (create-opts.c) --------------------- */

/* Refuses (EINVAL, "FILE: format F has no A, B or C options") opts that
 * ask for an option drv does not list (another format's), or, with
 * no_clusters, for a cluster size ("FILE: format F takes no
 * cluster_size, A or B"). */
int create_refuse_others (const char *filename, const struct driver *drv,
                          const struct image_create_opts *opts,
                          bool no_clusters);
/* The value given to option name (of type bool or size), or dflt. */
uint64_t create_opt_number (const struct image_create_opts *opts,
                            const char *name, uint64_t dflt);
/* The value given to string option name, or NULL. */
const char *create_opt_string (const struct image_create_opts *opts,
                               const char *name);

/* ---- amend (amend.c) ------------------------------------------------- */

/* The part of image_amend every format shares: the size (opts->size, as
 * image_resize with IMAGE_RESIZE_SHRINK) and the backing file and
 * format, which may only be named as they are. */
int amend_common (struct image *img, const struct image_create_opts *opts);

/* ---- resize (resize.c) ---------------------------------------------- */

/* Writes [old_size, img->size) as zeros through the driver and makes it
 * durable (the new part of a grown image over a longer backing image).
 * The caller has already set img->size to the new size. */
int resize_zero_new (struct image *img, uint64_t old_size);
/* The last step of a resize, once the format's tables can address
 * size: the new part zeroed (zero_new, with img->size already the new
 * size), then write_size (fmt, size) records it in the header;
 * img->size is the new size on success, the old one on failure. */
int resize_set_size (struct image *img, uint64_t size, bool zero_new,
                     int (*write_size) (void *fmt, uint64_t size),
                     void *fmt);
/* For crash tests: sleeps COWBD_TEST_PAUSE microseconds (if that is set
 * in the environment) between two steps of a header-changing operation
 * (resize, snapshot), so that a SIGKILL can land between them. */
void crash_test_pause (void);

/* ---- probing safety (probe.c) ------------------------------------------ */

/* Internal image_open flags, set by chain.c on the backing images it
 * opens (the public IMAGE_OPEN_* use the low byte). */
#define CHAIN_OPEN_PROBED_BACKING 0x100 /* the image naming this one
                                           records no backing format */
#define CHAIN_OPEN_QED_REFERRER   0x200 /* ... and it is QED */

/* The driver of that name, or NULL.  (chain.c) */
const struct driver *chain_driver (const char *name);
/* The i-th driver known (in probing order), or NULL past the last. */
const struct driver *chain_driver_at (unsigned i);

/* The driver whose magic starts buf (len may be short): raw if none.
 * (image.c) */
const struct driver *chain_probe_buf (const uint8_t *buf, size_t len);

/* After drv->open: a writable image whose format opts did not name and
 * which probed as raw gets its guard, and a warning.  */
int probe_guard_open (struct image *img, const struct image_open_opts *opts);
void probe_guard_free (struct image *img);

/* True if a change at offset may change what img probes as. */
static inline bool
probe_guarded (const struct image *img, uint64_t offset)
{
  return img->guard != NULL && offset < 512;
}

/* Runs a write, zero or trim that probe_guarded, already validated,
 * refusing it with EPERM if the first sector would then probe as another
 * format. */
enum probe_op { PROBE_OP_WRITE, PROBE_OP_ZERO, PROBE_OP_TRIM };
int probe_guarded_op (struct image *img, enum probe_op op, const void *buf,
                      uint64_t count, uint64_t offset, unsigned flags);

/* After drv->open of a backing image: refuses one reached by probing
 * that names a backing file of its own (see probe.c for the rule). */
int probe_check_backing (struct image *img, unsigned flags,
                         const char *referrer);

/* Gives a warning through the front end's image_set_warn function. */
void engine_warn (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));
/* The same for an alert (image_set_alert): what the operator must see. */
void engine_alert (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));

/* ---- file identity (fileid.c) ----------------------------------------- */

/* image_file_id_path's twin for an open descriptor (returns as it
 * does). */
int fileid_of_fd (int fd, struct image_file_id *id);

/* A remote request's timeout when image_open_opts.remote_timeout_ms is
 * 0. */
#define REMOTE_DEFAULT_TIMEOUT_MS 10000

#endif /* COWBD_FORMATS_INTERNAL_H */
