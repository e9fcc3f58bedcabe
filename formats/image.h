/* SPDX-License-Identifier: BSD-3-Clause */
/* The format engine: the one public API of formats/.
 *
 * An opened image is one object, shared by every user (NBD connections,
 * nbdkit threads, cowbd-img); every call is thread-safe.  An image may
 * have a backing chain of any formats: reads of ranges the image does not
 * allocate fall through to the backing image, and read zeros past its end.
 *
 * Errors: a call that fails returns -1 (or NULL) and leaves, in
 * thread-local storage, an errno value (image_errno) and a one-line
 * message naming the file and the fault (image_error), e.g.
 *   "base.qed: L2 table at 0x50000 lies past end of file"
 * The errno values are the ones a front end passes on unchanged: EINVAL
 * (bad request), ENOSPC (write past the end), EROFS/EPERM (read-only),
 * EIO (I/O error or corruption found), ENOTSUP (operation not possible,
 * e.g. a fast zero that would be slow), ENOMEM.
 *
 * Knows nothing about NBD.
 */
#ifndef COWBD_IMAGE_H
#define COWBD_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct image;

/* ---- errors -------------------------------------------------------- */

/* Message and errno of the calling thread's last failed call.  The
 * message stays valid until the next engine call in this thread. */
const char *image_error (void);
int image_errno (void);

/* ---- warnings ------------------------------------------------------- */

/* Where the engine's warnings go: one line each, no newline, naming the
 * file (e.g. that probing guessed raw, which is unsafe).  By default
 * they are written to stderr as "PROGRAM: warning: MSG".  fn NULL
 * restores the default.  Set it before opening images. */
typedef void (*image_warn_fn) (const char *msg);
void image_set_warn (image_warn_fn fn);

/* Alerts: events an operator must see at a program's default log level,
 * not only in its debug output: an image repaired at open (and what was
 * repaired), an image marked corrupt or refusing writes, a write refused
 * because it would land on metadata.  They go to fn, else where warnings
 * go.  (The plugin logs warnings as debug messages and alerts as
 * errors, nbdkit having no level between.) */
void image_set_alert (image_warn_fn fn);

/* ---- open and close ------------------------------------------------ */

/* Flags of image_open. */
#define IMAGE_OPEN_READONLY    0x01 /* never write the image */
#define IMAGE_OPEN_NO_BACKING  0x02 /* do not open the backing chain;
                                       unallocated ranges read as zeros */
#define IMAGE_OPEN_NO_REPAIR   0x04 /* an image needing a check (QED
                                       NEED_CHECK, qcow2 dirty) is not
                                       repaired at open: for `check`,
                                       which reports first and repairs
                                       only with -r */
#define IMAGE_OPEN_BACKING_RW  0x08 /* open the first backing image
                                       (or the one at depth
                                       opts->backing_rw_depth)
                                       read-write too (commit) */
#define IMAGE_OPEN_FORCE_SHARE 0x10 /* read-only only: take no lock that
                                       keeps others from writing the
                                       image or its backing files
                                       (qemu-img -U); what is read may
                                       then change underneath */

/* Formats known to the engine, for opts->format and image_create. */
#define IMAGE_FORMATS "raw, qed, qcow2"

/* Probing raw is unsafe (a guest could write another format's header,
 * with a backing file of its choosing, into the first sector), so an
 * image opened read-write by probing that turns out raw refuses, with
 * EPERM, any write, zero or trim after which its first 512 bytes would
 * probe as another format, and warns once at open.  A backing file whose
 * format the image naming it does not record is probed, and refused if
 * it probes as a format with a backing file of its own (except a QED
 * image named by a QED image: QED records no backing format but raw).
 * Details in probe.c and cowbd-formats(5). */
struct image_backing_cache;
struct image_open_opts {
  const char *format;           /* "raw", "qed", "qcow2"; NULL or "auto"
                                   probes the file's magic */
  unsigned flags;               /* IMAGE_OPEN_* */
  uint64_t cache_size;          /* metadata cache in bytes; 0: default */
  /* NULL: every image opens its own backing chain.  Else read-only
   * backing images come from this cache (see below). */
  const struct image_backing_cache *backing_cache;
  /* Backing file confinement (see confine.c): NULL trusts every backing
   * file.  Else a NULL-terminated list of directories: each backing file
   * of the chain must resolve (after symbolic links) inside one of
   * them, else the open fails with EINVAL and a line naming the image
   * and the path it asked for.  Checked even with IMAGE_OPEN_NO_BACKING
   * (a header peek refuses what a full open would).  The list must
   * outlive the open. */
  const char *const *backing_dirs;
  /* Remote images (an NBD URI as file or backing file name): a request
   * that gets no answer fails with EIO after this many milliseconds.
   * 0: the default, 10 seconds. */
  unsigned remote_timeout_ms;
  /* Remote images: NULL, or a folder where each remote base's data is
   * cached on this host (basecache.h), shared by every image of the
   * process that reads it and kept across restarts; bounded to
   * base_cache_size bytes (0: no bound). */
  const char *base_cache_dir;
  uint64_t base_cache_size;
  /* With IMAGE_OPEN_BACKING_RW: the depth of the backing image opened
   * read-write (1: the first backing image, 0 means 1 too; commit -b). */
  unsigned backing_rw_depth;
};

/* The same check on an open image's chain (an image a backing cache
 * hands out may have been opened under another policy): -1 after
 * image_set_error if some backing file lies outside dirs; 0 if dirs is
 * NULL. */
int image_check_confined (struct image *img, const char *const *dirs);
/* 0 if dirs is NULL or path resolves inside one of them (a served
 * directory's entry that is a symbolic link out of it); else -1 after
 * image_set_error. */
int image_check_path_confined (const char *path, const char *const *dirs);

/* Shared backing images.  A program serving many overlays of one base
 * (the export registry) wants the base opened once: one descriptor, one
 * lock, one metadata cache.  With opts->backing_cache set, an image
 * whose backing file is to be opened read-only asks get for it instead
 * of opening the file itself:
 *
 *   get (opaque, path, opts)   path as resolved against the overlay,
 *                              opts the backing open the engine would do
 *                              (format named by the overlay or NULL,
 *                              IMAGE_OPEN_READONLY, cache_size, and this
 *                              cache again).  Returns an image that stays
 *                              valid until put, or NULL after
 *                              image_set_error (or a failed image_open).
 *                              It must refuse loops and over-deep chains
 *                              itself (the engine cannot see across).
 *   put (opaque, image)        the overlay is closed and no longer reads
 *                              it.
 *
 * The engine checks what it gets: the format the overlay names, and that
 * the image is read-only (a writable base would change under the
 * overlay: refused with EBUSY).  The cache must outlive every image
 * opened with it.  Image calls on the shared image come from every
 * overlay's threads (the engine is thread-safe). */
struct image_backing_cache {
  struct image *(*get) (void *opaque, const char *path,
                        const struct image_open_opts *opts);
  void (*put) (void *opaque, struct image *backing);
  void *opaque;
};

/* Sets the calling thread's image_error and image_errno (for a
 * backing cache's get). */
void image_set_error (int errnum, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* Opens filename (and, unless IMAGE_OPEN_NO_BACKING, its backing chain,
 * refusing loops and chains deeper than IMAGE_MAX_CHAIN).  A read-write
 * open of an image left needing a check runs the check and repairs it.
 * Every file of the chain is locked as QEMU locks it (OFD byte-range
 * locks, see formats/lock.c): a read-write open excludes any other
 * writer and any reader without force-share; a read-only open (and
 * every backing file) excludes writers.  A file someone else uses that
 * way (another process, or another open in this one) is refused with
 * EBUSY and "FILE: image is in use (locked by another process); ...".
 * opts may be NULL: probe, read-write, default cache. */
#define IMAGE_MAX_CHAIN 64
struct image *image_open (const char *filename,
                          const struct image_open_opts *opts);

/* Flushes, marks the image clean (clears QED NEED_CHECK / qcow2 dirty),
 * closes the backing chain and frees everything.  The object is freed even
 * when -1 is returned (an error writing back metadata: the image is then
 * left marked as needing a check). */
int image_close (struct image *img);

/* ---- I/O ----------------------------------------------------------- */

/* Flags of the I/O calls. */
#define IMAGE_FUA        0x01   /* durable before the call returns */
#define IMAGE_MAY_TRIM   0x02   /* image_zero may deallocate the range */
#define IMAGE_FAST_ZERO  0x04   /* image_zero fails with ENOTSUP rather than
                                   write zeros slowly; nothing changes */

uint64_t image_size (struct image *img);
bool image_is_readonly (struct image *img);

/* Every request must lie within [0, image_size): past the end, pread fails
 * with EINVAL and pwrite/zero/trim with ENOSPC.  count may be 0. */
int image_pread (struct image *img, void *buf, size_t count, uint64_t offset);
int image_pwrite (struct image *img, const void *buf, size_t count,
                  uint64_t offset, unsigned flags);
/* Writes one whole guest cluster compressed (qcow2; EOPNOTSUPP for the
 * other formats): offset is cluster-aligned and count is the cluster
 * size, or less for the last cluster of an image whose size is not a
 * multiple of it (padded with zeros, as qemu does).  The cluster must be
 * unallocated (or a zero cluster without a host cluster): anything else
 * is EIO, as qemu's "compressed writes only to unallocated clusters".
 * Data that does not compress below a cluster is written uncompressed.
 * Thread-safe; the compression runs in the calling thread. */
int image_write_compressed (struct image *img, const void *buf,
                            size_t count, uint64_t offset);
int image_zero (struct image *img, uint64_t count, uint64_t offset,
                unsigned flags);
/* Gives space back where the format can; afterwards the range reads as
 * zeros or as its previous content (never another offset's data). */
int image_trim (struct image *img, uint64_t count, uint64_t offset,
                unsigned flags);
/* Everything written before the call is durable when it returns. */
int image_flush (struct image *img);

/* The same as image_pread, image_pwrite and image_flush, but they never
 * wait for I/O or for another thread: they fail with EAGAIN whenever the
 * call would have to (data not in the page cache, a table not in the
 * metadata cache, a cluster another request is allocating, a new L2
 * table, FUA or flush on a disk).  An event loop tries a small request
 * inline with these and hands it to a thread on EAGAIN, which then does
 * the whole request again (a write may have been partly done: it writes
 * the same bytes).  Files on tmpfs never wait for I/O, so when the whole
 * chain is in memory, allocating writes and flushes run too; elsewhere
 * reads use RWF_NOWAIT and writes are tried where the filesystem
 * supports it. */
int image_pread_nowait (struct image *img, void *buf, size_t count,
                        uint64_t offset);
int image_pwrite_nowait (struct image *img, const void *buf, size_t count,
                         uint64_t offset, unsigned flags);
int image_flush_nowait (struct image *img);
/* Where [offset, offset + count) lies in a local host file, for a server
 * that sends data without reading it into memory (sendfile, splice): 1
 * if the range starts with data stored contiguously in the host file of
 * the image or, where it is unallocated, of the backing image that
 * answers it (raw; an allocated, uncompressed data cluster of QED or
 * qcow2), with *fd, *host_offset and *contig (1 <= *contig <= count, how
 * far the host range goes on) set; 0 if not (a zero or compressed
 * cluster, past the end of a shorter backing image, a remote source):
 * read it with image_pread; -1 on error.  The descriptor stays the image's.  As for
 * image_pread's own I/O, the lookup is atomic, the read of the host
 * range is not: a trim or zero of the same clusters at the same time
 * may show through as the old or the new content, never another
 * offset's (freed clusters are not reused until the change is
 * durable). */
int image_map_host (struct image *img, uint64_t count, uint64_t offset,
                    int *fd, uint64_t *host_offset, uint64_t *contig);
/* Prefetches the range into the host's page cache (NBD_CMD_CACHE). */
int image_cache (struct image *img, uint64_t count, uint64_t offset);

/* ---- allocation status --------------------------------------------- */

/* Extent flags.  Seen through the whole chain, as qemu-img map and NBD
 * base:allocation see them. */
#define IMAGE_EXTENT_DATA     0x01 /* data allocated somewhere in the chain
                                      (unset: a hole, reads as zeros or
                                      falls through to nothing) */
#define IMAGE_EXTENT_ZERO     0x02 /* known to read as zeros */
#define IMAGE_EXTENT_PRESENT  0x04 /* allocated (data or zero cluster) by
                                      some image of the chain */
#define IMAGE_EXTENT_COMPRESSED 0x08 /* compressed cluster (no host range) */

struct image_extent {
  uint64_t offset;              /* guest offset */
  uint64_t length;
  unsigned flags;               /* IMAGE_EXTENT_* */
  /* The chain element that answered: 0 is the image itself, 1 its backing
   * image...  Unallocated ranges report the depth where the lookup
   * stopped, as qemu-img map does: the last image of the chain that
   * covers the offset, or the shallowest image the offset lies beyond. */
  unsigned depth;
  int64_t host_offset;          /* byte offset in that image's file, or -1 */
  const char *filename;         /* that image's file name */
};

/* Calls fn for consecutive extents covering [offset, offset + count),
 * stopping early if fn returns non-zero (that value is returned) or, with
 * IMAGE_EXTENTS_ONE, after the first extent.  Extents are as large as the
 * engine can cheaply make them: adjacent ones may share flags. */
#define IMAGE_EXTENTS_ONE 0x01
typedef int (*image_extent_fn) (void *opaque, const struct image_extent *e);
int image_extents (struct image *img, uint64_t count, uint64_t offset,
                   unsigned flags, image_extent_fn fn, void *opaque);

/* ---- information ---------------------------------------------------- */

/* Format-specific information (qemu-img info's "format-specific"), as
 * qemu's ImageInfoSpecific: a tag naming the format and that format's
 * own part, filled by its driver. */
enum image_info_kind {
  IMAGE_INFO_NONE = 0,          /* raw: nothing of its own */
  IMAGE_INFO_QED,
  IMAGE_INFO_QCOW2,
};

struct image_info_qed {
  uint32_t table_size;          /* in clusters */
};

struct image_info_qcow2 {
  const char *compat;           /* "0.10" or "1.1" */
  bool lazy_refcounts;
  unsigned refcount_bits;
  bool corrupt;
  unsigned nb_snapshots;
  const char *compression_type; /* "zlib" or "zstd" */
  bool extended_l2;
  const char *data_file;        /* external data file, or NULL */
};

struct image_info_specific {
  enum image_info_kind kind;
  union {                       /* the member kind names */
    struct image_info_qed qed;
    struct image_info_qcow2 qcow2;
  };
};

struct image_info {
  const char *filename;
  const char *format;           /* "raw", "qed", "qcow2" */
  uint64_t virtual_size;
  uint64_t actual_size;         /* bytes the host file occupies on disk */
  uint64_t file_size;           /* host file length */
  uint32_t cluster_size;        /* 0 for raw */
  const char *backing_filename; /* as stored in the header, or NULL */
  const char *full_backing_filename; /* resolved path, or NULL */
  const char *backing_format;   /* stored or probed format, or NULL */
  bool dirty;                   /* QED NEED_CHECK / qcow2 dirty bit */
  bool readonly;
  struct image_info_specific specific;
};

/* Fills *info; strings point into the image and live as long as it. */
void image_get_info (struct image *img, struct image_info *info);

/* Running figures of an open image, for metrics.  Counted without a
 * lock (relaxed atomics); each is read on its own, so together they are
 * not one instant's snapshot. */
struct image_stats {
  uint64_t backing_read_bytes;  /* read from the backing chain on behalf
                                   of this image (unallocated ranges,
                                   copy-on-write fills) */
  uint64_t allocated_bytes;     /* host file blocks in use (st_blocks) */
  uint64_t cache_hits;          /* metadata cache lookups found */
  uint64_t cache_misses;        /* ... not found (the table is read) */
  uint64_t cache_evictions;     /* tables dropped to stay in bounds */
  uint64_t cache_bytes;         /* what the cached tables take now (a
                                   compact table at its compact size) */
  /* Of the remote (NBD) images of the chain below, shared by every image
   * that reads them: */
  uint64_t remote_fetched_bytes; /* bytes the remotes sent */
  uint64_t remote_cache_hits;   /* reads the base cache (--base-cache)
                                   served alone */
  uint64_t remote_cache_misses; /* reads it fetched for */
};
void image_get_stats (struct image *img, struct image_stats *st);

/* Internal snapshots (qcow2), as qemu-img snapshot -l lists them. */
struct image_snapshot {
  const char *id, *name;
  uint64_t vm_state_size;       /* bytes */
  uint32_t date_sec, date_nsec; /* when it was taken */
  uint64_t vm_clock_nsec;       /* guest clock */
  uint64_t icount;              /* UINT64_MAX: not recorded */
};
/* Calls fn for each snapshot in table order, stopping early if fn
 * returns non-zero (that value is returned).  Formats without
 * snapshots have none: 0.  Strings live as long as the image. */
typedef int (*image_snapshot_fn) (void *opaque,
                                  const struct image_snapshot *sn);
int image_snapshots (struct image *img, image_snapshot_fn fn, void *opaque);

/* Internal snapshots changed as qemu-img snapshot -c, -a, -d change them
 * (qcow2; ENOTSUP for other formats), on an image the caller has to
 * itself, opened read-write.  create: a new snapshot of the active layer
 * named name (the next numeric id); apply: the active layer becomes the
 * snapshot whose id, or else whose name, is id_or_name, with its size;
 * delete: the first snapshot named name goes.  ENOENT: no such snapshot.
 * A crash leaves the snapshot wholly there or wholly absent once the
 * next read-write open has repaired the counts. */
int image_snapshot_create (struct image *img, const char *name);
int image_snapshot_apply (struct image *img, const char *id_or_name);
int image_snapshot_delete (struct image *img, const char *name);

/* The backing image (NULL if none or not opened). */
struct image *image_backing (struct image *img);

/* ---- consistency check ----------------------------------------------- */

/* Flags of image_check, as qemu-img check -r. */
#define IMAGE_CHECK_REPAIR_LEAKS   0x01 /* truncate leaked clusters at the
                                           end of the file (qcow2: and fix
                                           refcounts of leaked clusters) */
#define IMAGE_CHECK_REPAIR_ERRORS  0x02 /* also drop invalid table entries */

struct image_check_result {
  uint64_t corruptions;
  uint64_t leaks;
  uint64_t check_errors;
  uint64_t corruptions_fixed;
  uint64_t leaks_fixed;
  uint64_t image_end_offset;
  uint64_t total_clusters;
  uint64_t allocated_clusters;
  uint64_t fragmented_clusters;
  uint64_t compressed_clusters;
};

/* Checks (and with repair flags, repairs) the image, which must have been
 * opened with IMAGE_OPEN_NO_REPAIR when it is dirty, and read-write for a
 * repair.  Each problem found is reported through report(opaque, msg)
 * ("Leaked cluster 12 refcount=1 reference=0", "ERROR ..."), which may be
 * NULL.  Returns 0 when the check ran (whatever it found), -1 when it could
 * not run. */
typedef void (*image_report_fn) (void *opaque, const char *msg);
int image_check (struct image *img, unsigned flags,
                 struct image_check_result *result,
                 image_report_fn report, void *opaque);

/* ---- create -------------------------------------------------------- */

enum image_prealloc {
  IMAGE_PREALLOC_OFF = 0,
  IMAGE_PREALLOC_METADATA,
  IMAGE_PREALLOC_FALLOC,
  IMAGE_PREALLOC_FULL,
};

/* Format-specific create options.  Each format declares the options it
 * takes beyond the common ones of struct image_create_opts, as qemu's
 * drivers declare theirs (today qed: table_size; qcow2: compat,
 * lazy_refcounts, refcount_bits, compression_type; cowbd-formats(5)
 * says what they mean).  The front end parses a value as the option's
 * type says; the format's create checks what it means and refuses an
 * option of another format (EINVAL, naming it) unless its value is 0 or
 * off, which asks for nothing. */
enum image_option_type {
  IMAGE_OPTION_STRING,          /* value in .string */
  IMAGE_OPTION_BOOL,            /* .number: 1 (on) or 0 (off) */
  IMAGE_OPTION_SIZE,            /* .number: a size, at most UINT32_MAX */
};

struct image_option {
  const char *name;             /* as -o names it */
  enum image_option_type type;
  bool amend;                   /* image_amend can change it too */
};

/* The i-th format-specific option (the formats' lists one after the
 * other, in the order they declare them, an option several formats
 * take once), or NULL past the last. */
const struct image_option *image_option_at (unsigned i);
/* The format-specific option named name, or NULL if no format takes
 * it. */
const struct image_option *image_option_lookup (const char *name);

/* A value given to one of them. */
struct image_option_value {
  const char *name;
  const char *string;           /* IMAGE_OPTION_STRING */
  uint64_t number;              /* IMAGE_OPTION_BOOL, IMAGE_OPTION_SIZE */
};

struct image_create_opts {
  const char *format;           /* NULL: the default format */
  uint64_t size;                /* 0 with a backing file: take its size */
  const char *backing_file;     /* stored as given; resolved relative to
                                   the new image's directory */
  const char *backing_format;   /* NULL: probe the backing file */
  bool no_backing_check;        /* do not open the backing file (qemu-img
                                   create -u): size must be given, the
                                   format is stored as given */
  uint32_t cluster_size;        /* 0: the format's default */
  enum image_prealloc prealloc;
  unsigned remote_timeout_ms;   /* opening a remote backing file: as
                                   image_open_opts; 0: the default */
  /* Format-specific options (see above), nr_options of them, each name
   * at most once; an option not given takes the format's default. */
  const struct image_option_value *options;
  size_t nr_options;
  /* Called now and then during a long preallocation with the bytes done
   * and the total.  A non-zero return cancels the create (errno ECANCELED):
   * the partial file is removed. */
  int (*progress) (void *opaque, uint64_t done, uint64_t total);
  void *progress_opaque;
};

/* The value of the option named name in opts, or NULL if not given. */
const struct image_option_value *
image_option_find (const struct image_create_opts *opts, const char *name);

#define IMAGE_DEFAULT_FORMAT "qcow2"

/* Creates filename (which must not be a directory; an existing file is
 * replaced).  On any failure the new file is removed. */
int image_create (const char *filename, const struct image_create_opts *opts);

/* ---- header changes (rebase, commit) ---------------------------------- */

/* Rewrites the backing file name and format in the header (NULL name:
 * no backing file).  Does not copy data and does not reopen the chain: the
 * open image keeps its current backing image until it is closed. */
int image_set_backing (struct image *img, const char *backing_file,
                       const char *backing_format);

/* Drops every allocation of the image itself (after commit), so that all
 * of it reads from the backing image again. */
int image_make_empty (struct image *img);

/* Changes the virtual size (qemu-img resize).  Growing keeps every byte
 * and reads zeros in the new part: where a backing image would show
 * through it (it is longer than the old size) the new part is written as
 * zero clusters first (qcow2 v3, QED; a qcow2 v2 image is refused, as
 * qemu refuses it).  Shrinking needs IMAGE_RESIZE_SHRINK: raw is cut,
 * qcow2 drops the clusters past the new end (as qemu-img does), QED
 * refuses while it allocates a cluster past the new end.  prealloc: the
 * new part of a raw image (falloc, full); qcow2 and QED take only off.
 * The size changes in one header write: a crash leaves the old size or
 * the new (and, in between, at most clusters a check finds leaked).  The
 * caller has the image to itself (cowbd-img). */
#define IMAGE_RESIZE_SHRINK 0x01
int image_resize (struct image *img, uint64_t size,
                  enum image_prealloc prealloc, unsigned flags);

/* Changes what qemu-img amend -o changes, in an image opened read-write
 * that the caller has to itself: the format-specific options whose
 * image_option.amend is set (qcow2: compat 0.10 <-> 1.1, "v2"/"v3" too,
 * a downgrade only where no version 3 feature is in use, and
 * lazy_refcounts on or off), and opts->size (as image_resize, shrinking
 * allowed).  opts->backing_file and backing_format may only name what
 * the image has (EINVAL: rebase changes them).  The caller refuses the
 * options only a create can set.  A format without amendable options
 * (raw, QED) refuses with ENOTSUP; a refused compat change writes
 * nothing. */
int image_amend (struct image *img, const struct image_create_opts *opts);

/* Probes a file's format without opening it as an image: "raw", "qed" or
 * "qcow2", or NULL with an error set. */
const char *image_probe (const char *filename);

/* The path of a backing file as the engine opens it: an absolute name as
 * it is, a relative one against the directory of the overlay.  Returns a
 * malloc'd string, or NULL with an error set. */
char *image_resolve_backing (const char *overlay, const char *backing);

/* ---- file identity ------------------------------------------------- */

/* True if name is an NBD URI (nbd://, nbd+unix://, nbds://, ...+vsock)
 * rather than a file name: opened through libnbd, never resolved as a
 * path. */
bool image_name_is_uri (const char *name);

/* What makes two names one file: its device and inode.  The engine
 * refuses backing chain loops by it, cowbd-img refuses to overwrite a
 * source with it, and the front ends keep one engine image per file by
 * it.  A remote image's (an NBD URI's) identity is the URI's text.
 * The calls return 0, or -1 with errno set (no image_error). */
struct image_file_id {
  uint64_t dev, ino;
};
int image_file_id_path (const char *path, struct image_file_id *id);
/* The identity of a file already stat'd, and the comparison. */
struct stat;
void image_file_id_of_stat (const struct stat *st, struct image_file_id *id);
bool image_file_id_equal (const struct image_file_id *a,
                          const struct image_file_id *b);
/* True if paths a and b name one file (false if either cannot be
 * stat'd). */
bool image_same_file (const char *a, const char *b);

#endif /* COWBD_IMAGE_H */
