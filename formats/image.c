/* SPDX-License-Identifier: BSD-3-Clause */
/* The generic layer of the engine: probing, opening backing chains,
 * request validation, extents through the chain, errors.
 *
 * Every public call validates its request here, once, before the driver
 * sees it; drivers trust their arguments.  A backing chain is a list of
 * images linked through img->backing, each opened read-only (except the
 * first with IMAGE_OPEN_BACKING_RW) and each owned by the image above it.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checked-overflow.h"
#include "cleanup.h"
#include "internal.h"
#include "minmax.h"
#include "rounding.h"

/* ---- errors ----------------------------------------------------------- */

static _Thread_local char error_msg[1024];
static _Thread_local int error_errno;

const char *
image_error (void)
{
  return error_msg[0] ? error_msg : "no error";
}

int
image_errno (void)
{
  return error_errno;
}

static void
set_error_v (int errnum, const char *prefix, const char *fmt, va_list ap)
{
  size_t n = 0;

  if (prefix)
    n = (size_t) snprintf (error_msg, sizeof error_msg, "%s: ", prefix);
  if (n < sizeof error_msg)
    vsnprintf (error_msg + n, sizeof error_msg - n, fmt, ap);
  error_errno = errnum;
}

int
image_err (int errnum, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  set_error_v (errnum, NULL, fmt, ap);
  va_end (ap);
  errno = errnum;
  return -1;
}

void
image_set_error (int errnum, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  set_error_v (errnum, NULL, fmt, ap);
  va_end (ap);
  errno = errnum;
}

int
image_errf (struct image *img, int errnum, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  set_error_v (errnum, img->filename, fmt, ap);
  va_end (ap);
  errno = errnum;
  return -1;
}

int
image_err_sys (struct image *img, const char *what)
{
  int e = errno;
  return image_errf (img, e, "%s: %s", what, strerror (e));
}

void
image_report (image_report_fn report, void *opaque, const char *fmt, ...)
{
  char msg[256];
  va_list ap;

  if (report == NULL)
    return;
  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  report (opaque, msg);
}

/* ---- probing --------------------------------------------------------- */

/* Probed in this order; raw, which has no magic, last. */
static const struct driver *const drivers[] = {
  &qed_driver,
  &qcow2_driver,
  &raw_driver,
};

static const struct driver *
driver_by_name (const char *name)
{
  size_t i;

  for (i = 0; i < sizeof drivers / sizeof drivers[0]; i++)
    if (strcmp (drivers[i]->name, name) == 0)
      return drivers[i];
  return NULL;
}

const struct driver *
image_probe_buf (const uint8_t *buf, size_t len)
{
  size_t i;

  for (i = 0; i < sizeof drivers / sizeof drivers[0]; i++)
    if (drivers[i]->probe && drivers[i]->probe (buf, len))
      return drivers[i];
  return &raw_driver;
}

/* Probes an open file from its first sector (what probe.c guards). */
static const struct driver *
probe_fd (int fd)
{
  uint8_t buf[512];
  ssize_t n;

  do
    n = pread (fd, buf, sizeof buf, 0);
  while (n == -1 && errno == EINTR);
  if (n == -1)
    return NULL;
  return image_probe_buf (buf, (size_t) n);
}

const char *
image_probe (const char *filename)
{
  CLEANUP_CLOSE int fd = open (filename, O_RDONLY | O_CLOEXEC);
  const struct driver *drv;

  if (fd == -1)
    return image_err (errno, "%s: %s", filename, strerror (errno)), NULL;
  drv = probe_fd (fd);
  if (drv == NULL)
    return image_err (errno, "%s: reading the header: %s", filename,
                      strerror (errno)), NULL;
  return drv->name;
}

/* ---- open and close --------------------------------------------------- */

char *
image_resolve_backing (const char *overlay, const char *backing)
{
  char *r;

  if (backing[0] == '/' || strchr (overlay, '/') == NULL)
    r = strdup (backing);
  else {
    const char *slash = strrchr (overlay, '/');
    int dirlen = (int) (slash - overlay);
    if (asprintf (&r, "%.*s/%s", dirlen, overlay, backing) == -1)
      r = NULL;
  }
  if (r == NULL)
    image_err (ENOMEM, "%s: out of memory", overlay);
  return r;
}

/* One (device, inode) per image of the chain being opened, to refuse
 * loops. */
struct chain_seen {
  dev_t dev[IMAGE_MAX_CHAIN + 1];
  ino_t ino[IMAGE_MAX_CHAIN + 1];
};

static void free_image (struct image *img);
static struct image *open_chain (const char *filename,
                                 const struct image_open_opts *opts,
                                 unsigned depth, struct chain_seen *seen,
                                 const char *referrer);

static const struct driver *
choose_driver (struct image *img, const char *format)
{
  const struct driver *drv;

  if (format == NULL || strcmp (format, "auto") == 0) {
    drv = probe_fd (img->fd);
    if (drv == NULL)
      image_err_sys (img, "reading the header");
    return drv;
  }
  drv = driver_by_name (format);
  if (drv == NULL)
    image_errf (img, EINVAL, "unknown format '%s' (known: %s)", format,
                IMAGE_FORMATS);
  return drv;
}

/* Refuses a file already seen in this chain. */
static int
check_loop (struct image *img, unsigned depth, struct chain_seen *seen)
{
  struct stat st;
  unsigned i;

  if (fstat (img->fd, &st) == -1)
    return image_err_sys (img, "stat");
  for (i = 0; i < depth; i++)
    if (seen->dev[i] == st.st_dev && seen->ino[i] == st.st_ino)
      return image_errf (img, ELOOP,
                         "backing chain loop: this file is its own backing "
                         "file (through %u image(s))", depth - i);
  seen->dev[depth] = st.st_dev;
  seen->ino[depth] = st.st_ino;
  return 0;
}

/* Takes img's backing image from the cache (see image.h) and checks
 * that it is what img needs. */
static int
get_shared_backing (struct image *img, const struct image_open_opts *bopts)
{
  const struct image_backing_cache *bc = bopts->backing_cache;
  struct image_open_opts o = *bopts;
  struct image *b;

  o.flags &= ~(unsigned) (IMAGE_OPEN_PROBED_BACKING |
                          IMAGE_OPEN_QED_REFERRER);
  b = bc->get (bc->opaque, img->full_backing_filename, &o);
  if (b == NULL) {
    char why[sizeof error_msg];
    snprintf (why, sizeof why, "%s", error_msg);
    return image_err (error_errno, "%s: backing file %s", img->filename,
                      why);
  }
  img->backing = b;
  img->backing_cache = bc;      /* close_image gives it back */
  if (!b->readonly)
    return image_errf (img, EBUSY, "backing file %s: image is in use "
                       "(open for writing in this process)", b->filename);
  if (bopts->format && strcmp (bopts->format, b->drv->name) != 0)
    return image_errf (img, EINVAL, "backing file %s is open as %s, but "
                       "this image names it %s", b->filename,
                       b->drv->name, bopts->format);
  return probe_check_backing (b, bopts->flags, img->filename);
}

/* Opens img's backing image, if it names one. */
static int
open_backing (struct image *img, const struct image_open_opts *opts,
              struct chain_seen *seen)
{
  struct image_open_opts bopts = *opts;

  if (img->backing_filename == NULL)
    return 0;
  img->full_backing_filename =
    image_resolve_backing (img->filename, img->backing_filename);
  if (img->full_backing_filename == NULL)
    return -1;
  if (opts->flags & IMAGE_OPEN_NO_BACKING)
    return 0;
  if (img->depth + 1 > IMAGE_MAX_CHAIN)
    return image_errf (img, ELOOP, "backing chain deeper than %d images",
                       IMAGE_MAX_CHAIN);

  bopts.format = img->backing_format;
  bopts.flags = IMAGE_OPEN_READONLY | (opts->flags & IMAGE_OPEN_FORCE_SHARE);
  if (img->depth == 0 && (opts->flags & IMAGE_OPEN_BACKING_RW))
    bopts.flags = 0;
  if (bopts.format == NULL)     /* probed: see probe.c, rule 2 */
    bopts.flags |= IMAGE_OPEN_PROBED_BACKING |
      (img->drv == &qed_driver ? IMAGE_OPEN_QED_REFERRER : 0);
  if (opts->backing_cache && (bopts.flags & IMAGE_OPEN_READONLY) &&
      !(bopts.flags & IMAGE_OPEN_FORCE_SHARE)) {
    if (get_shared_backing (img, &bopts) == -1)
      return -1;
  }
  else {
    bopts.backing_cache = NULL;
    img->backing = open_chain (img->full_backing_filename, &bopts,
                               img->depth + 1, seen, img->filename);
    if (img->backing == NULL)
      return -1;
  }
  if (img->backing_format == NULL) {
    img->backing_format = strdup (img->backing->drv->name);
    if (img->backing_format == NULL)
      return image_errf (img, ENOMEM, "out of memory");
  }
  return 0;
}

static struct image *
open_chain (const char *filename, const struct image_open_opts *opts,
            unsigned depth, struct chain_seen *seen, const char *referrer)
{
  struct image *img;
  int flags;

  img = calloc (1, sizeof *img);
  if (img == NULL) {
    image_err (ENOMEM, "%s: out of memory", filename);
    return NULL;
  }
  img->fd = -1;
  img->depth = depth;
  img->host_dense = -1;
  img->readonly = opts->flags & IMAGE_OPEN_READONLY;
  img->filename = strdup (filename);
  if (img->filename == NULL) {
    image_err (ENOMEM, "%s: out of memory", filename);
    goto err;
  }

  flags = (img->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  img->fd = open (filename, flags);
  if (img->fd == -1) {
    if (referrer)
      image_err (errno, "%s: backing file %s: %s", referrer, filename,
                 strerror (errno));
    else
      image_err (errno, "%s: %s", filename, strerror (errno));
    goto err;
  }
  if (lock_image (img, opts->flags) == -1) {
    if (referrer) {
      char why[sizeof error_msg];
      snprintf (why, sizeof why, "%s", error_msg);
      image_err (error_errno, "%s: backing file %s", referrer, why);
    }
    goto err;
  }
  if (check_loop (img, depth, seen) == -1)
    goto err;
  host_nowait_init (img);

  img->drv = choose_driver (img, opts->format);
  if (img->drv == NULL)
    goto err;
  if (img->drv->open (img, opts) == -1) {
    img->drv = NULL;            /* the driver freed its state */
    goto err;
  }
  if (probe_guard_open (img, opts) == -1 ||
      probe_check_backing (img, opts->flags, referrer) == -1)
    goto err;
  if (open_backing (img, opts, seen) == -1)
    goto err;
  img->chain_in_memory = img->host_in_memory &&
    (img->backing == NULL || img->backing->chain_in_memory);
  return img;

 err:
  free_image (img);
  return NULL;
}

struct image *
image_open (const char *filename, const struct image_open_opts *opts)
{
  static const struct image_open_opts defaults;
  struct chain_seen seen;

  if (opts && (opts->flags & IMAGE_OPEN_FORCE_SHARE) &&
      (opts->flags & (IMAGE_OPEN_READONLY | IMAGE_OPEN_BACKING_RW)) !=
      IMAGE_OPEN_READONLY) {
    image_err (EINVAL, "%s: force-share can only be used with read-only "
               "opens", filename);
    return NULL;
  }
  return open_chain (filename, opts ? opts : &defaults, 0, &seen, NULL);
}

/* Closes the driver (if opened), the backing chain and the file. */
static int
close_image (struct image *img)
{
  int r = 0;

  if (img->drv && img->drv->close (img) == -1)
    r = -1;
  if (img->backing && img->backing_cache)
    img->backing_cache->put (img->backing_cache->opaque, img->backing);
  else if (img->backing && close_image (img->backing) == -1 && r == 0)
    r = -1;
  if (img->fd >= 0 && close (img->fd) == -1 && r == 0)
    r = image_err_sys (img, "close");
  probe_guard_free (img);
  free (img->filename);
  free (img->backing_filename);
  free (img->backing_format);
  free (img->full_backing_filename);
  free (img);
  return r;
}

static void
free_image (struct image *img)
{
  int e = error_errno;
  char saved[sizeof error_msg];

  /* Keep the error that made the open fail, not a cleanup's. */
  memcpy (saved, error_msg, sizeof saved);
  close_image (img);
  memcpy (error_msg, saved, sizeof saved);
  error_errno = e;
  errno = e;
}

int
image_close (struct image *img)
{
  if (img == NULL)
    return 0;
  return close_image (img);
}

/* ---- request validation ------------------------------------------------ */

uint64_t
image_size (struct image *img)
{
  return img->size;
}

bool
image_is_readonly (struct image *img)
{
  return img->readonly;
}

struct image *
image_backing (struct image *img)
{
  return img->backing;
}

/* Checks that [offset, offset + count) lies within the image.  errnum is
 * what the caller reports when it does not (EINVAL for reads, ENOSPC for
 * writes, as NBD names them). */
static int
check_range (struct image *img, uint64_t count, uint64_t offset, int errnum,
             const char *op)
{
  if (RANGE_OUTSIDE (offset, count, img->size))
    return image_errf (img, errnum,
                       "%s of %" PRIu64 " bytes at offset %" PRIu64
                       " lies past the end of the image (%" PRIu64 " bytes)",
                       op, count, offset, img->size);
  return 0;
}

static int
check_writable (struct image *img, const char *op)
{
  if (img->readonly)
    return image_errf (img, EROFS, "%s: image is opened read-only", op);
  return 0;
}

int
image_pread (struct image *img, void *buf, size_t count, uint64_t offset)
{
  if (check_range (img, count, offset, EINVAL, "read") == -1)
    return -1;
  if (count == 0)
    return 0;
  return img->drv->pread (img, buf, count, offset);
}

int
image_pwrite (struct image *img, const void *buf, size_t count,
              uint64_t offset, unsigned flags)
{
  if (check_writable (img, "write") == -1 ||
      check_range (img, count, offset, ENOSPC, "write") == -1)
    return -1;
  if (count == 0)
    return (flags & IMAGE_FUA) ? img->drv->flush (img) : 0;
  if (probe_guarded (img, offset))
    return probe_guarded_op (img, PROBE_OP_WRITE, buf, count, offset, flags);
  return img->drv->pwrite (img, buf, count, offset, flags);
}

int
image_zero (struct image *img, uint64_t count, uint64_t offset,
            unsigned flags)
{
  if (check_writable (img, "write zeroes") == -1 ||
      check_range (img, count, offset, ENOSPC, "write zeroes") == -1)
    return -1;
  if (count == 0)
    return (flags & IMAGE_FUA) ? img->drv->flush (img) : 0;
  if (probe_guarded (img, offset))
    return probe_guarded_op (img, PROBE_OP_ZERO, NULL, count, offset, flags);
  return img->drv->zero (img, count, offset, flags);
}

int
image_trim (struct image *img, uint64_t count, uint64_t offset,
            unsigned flags)
{
  if (check_writable (img, "trim") == -1 ||
      check_range (img, count, offset, ENOSPC, "trim") == -1)
    return -1;
  if (count == 0)
    return (flags & IMAGE_FUA) ? img->drv->flush (img) : 0;
  if (probe_guarded (img, offset))
    return probe_guarded_op (img, PROBE_OP_TRIM, NULL, count, offset, flags);
  return img->drv->trim (img, count, offset, flags);
}

int
image_flush (struct image *img)
{
  if (img->readonly)
    return 0;
  return img->drv->flush (img);
}

/* Any failure of the non-blocking calls is EAGAIN: the blocking call the
 * caller falls back to reports the real trouble, with its message. */
static int
would_block (void)
{
  errno = EAGAIN;
  error_errno = EAGAIN;
  return -1;
}

int
image_pread_nowait (struct image *img, void *buf, size_t count,
                    uint64_t offset)
{
  if (RANGE_OUTSIDE (offset, count, img->size) || count == 0 ||
      img->drv->pread_nowait == NULL ||
      img->drv->pread_nowait (img, buf, count, offset) == -1)
    return would_block ();
  return 0;
}

int
image_pwrite_nowait (struct image *img, const void *buf, size_t count,
                     uint64_t offset, unsigned flags)
{
  if (img->readonly || ((flags & IMAGE_FUA) && !img->host_in_memory) ||
      RANGE_OUTSIDE (offset, count, img->size) || count == 0 ||
      probe_guarded (img, offset) ||
      img->drv->pwrite_nowait == NULL ||
      img->drv->pwrite_nowait (img, buf, count, offset, flags) == -1)
    return would_block ();
  return 0;
}

/* A flush only waits for I/O on a disk: on tmpfs fdatasync returns at
 * once and the metadata it writes goes to memory. */
int
image_flush_nowait (struct image *img)
{
  if (img->readonly)
    return 0;
  if (!img->host_in_memory || img->drv->flush (img) == -1)
    return would_block ();
  return 0;
}

/* ---- backing reads ------------------------------------------------------ */

int
image_read_backing (struct image *img, void *buf, size_t count,
                    uint64_t offset)
{
  struct image *b = img->backing;
  size_t n = 0;

  if (b && offset < b->size) {
    n = (size_t) MIN ((uint64_t) count, b->size - offset);
    if (b->drv->pread (b, buf, n, offset) == -1)
      return -1;
    __atomic_fetch_add (&img->backing_read_bytes, n, __ATOMIC_RELAXED);
  }
  if (n < count)
    memset ((char *) buf + n, 0, count - n);
  return 0;
}

int
image_read_backing_nowait (struct image *img, void *buf, size_t count,
                           uint64_t offset)
{
  struct image *b = img->backing;
  size_t n = 0;

  if (b && offset < b->size) {
    n = (size_t) MIN ((uint64_t) count, b->size - offset);
    if (b->drv->pread_nowait == NULL ||
        b->drv->pread_nowait (b, buf, n, offset) == -1)
      return would_block ();
    __atomic_fetch_add (&img->backing_read_bytes, n, __ATOMIC_RELAXED);
  }
  if (n < count)
    memset ((char *) buf + n, 0, count - n);
  return 0;
}

/* ---- extents through the chain ----------------------------------------- */

bool
image_host_dense (struct image *img)
{
  int d = __atomic_load_n (&img->host_dense, __ATOMIC_RELAXED);

  if (d == -1) {
    /* Racing first callers may both look: the answer is the same.  A
     * punch in between stores 0 after, or our 1 lands first and the punch
     * overwrites it: never a stale 1 after a punch returned. */
    d = host_is_dense (img->fd, img->data_start);
    __atomic_compare_exchange_n (&img->host_dense, &(int) { -1 }, d, false,
                                 __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    d = __atomic_load_n (&img->host_dense, __ATOMIC_RELAXED);
  }
  return d == 1;
}

/* Fills *e with the status of the run at offset in img (depth d of the
 * chain), following unallocated ranges down the chain.  quick: see
 * struct drv_status. */
static int
chain_status (struct image *img, uint64_t offset, uint64_t count,
              unsigned d, bool quick, struct image_extent *e)
{
  struct drv_status st = { .host_offset = -1, .quick = quick };

  if (img->drv->block_status (img, offset, count, &st) == -1)
    return -1;
  assert (st.length > 0 && st.length <= count);

  e->offset = offset;
  e->length = st.length;
  e->depth = d;
  e->host_offset = st.host_offset;
  e->filename = img->filename;

  switch (st.kind) {
  case DRV_DATA:
    e->flags = IMAGE_EXTENT_DATA | IMAGE_EXTENT_PRESENT;
    if (st.compressed)
      e->flags |= IMAGE_EXTENT_COMPRESSED;
    else if (img->drv->refine_host_holes && !st.host_checked &&
             st.host_offset >= 0 && !image_host_dense (img)) {
      /* A cluster over a hole of the host file reads as zeros: say so,
       * and split the run where the host file changes. */
      bool is_data;
      uint64_t len;
      if (host_data_status (img->fd, (uint64_t) st.host_offset, st.length,
                            quick, &is_data, &len) == -1)
        return image_err_sys (img, "SEEK_DATA");
      e->length = len;
      if (!is_data)
        e->flags |= IMAGE_EXTENT_ZERO;
    }
    return 0;

  case DRV_ZERO:
    e->flags = IMAGE_EXTENT_ZERO | IMAGE_EXTENT_PRESENT;
    return 0;

  case DRV_UNALLOCATED:
    if (img->backing && offset < img->backing->size)
      return chain_status (img->backing, offset,
                           MIN (st.length, img->backing->size - offset),
                           d + 1, quick, e);
    /* No backing image, or past its end: zeros, reported at this depth. */
    e->flags = IMAGE_EXTENT_ZERO;
    e->host_offset = -1;
    if (img->backing)
      e->length = st.length;
    return 0;
  }
  abort ();
}

int
image_extents (struct image *img, uint64_t count, uint64_t offset,
               unsigned flags, image_extent_fn fn, void *opaque)
{
  if (check_range (img, count, offset, EINVAL, "block status") == -1)
    return -1;
  while (count > 0) {
    struct image_extent e;
    int r;

    if (chain_status (img, offset, count, 0, false, &e) == -1)
      return -1;
    r = fn (opaque, &e);
    if (r != 0)
      return r;
    if (flags & IMAGE_EXTENTS_ONE)
      break;
    offset += e.length;
    count -= e.length;
  }
  return 0;
}

bool
image_backing_is_zero (struct image *img, uint64_t offset, uint64_t count)
{
  struct image *b = img->backing;

  while (count > 0) {
    struct image_extent e;

    if (b == NULL || offset >= b->size)
      return true;
    if (chain_status (b, offset, MIN (count, b->size - offset), 1, true,
                      &e) == -1)
      return false;
    if (!(e.flags & IMAGE_EXTENT_ZERO))
      return false;
    offset += e.length;
    count -= e.length;
  }
  return true;
}

int
image_cache (struct image *img, uint64_t count, uint64_t offset)
{
  struct image_extent e;

  if (check_range (img, count, offset, EINVAL, "cache") == -1)
    return -1;
  /* Ask the kernel to read ahead each host range the chain maps. */
  while (count > 0) {
    if (chain_status (img, offset, count, 0, false, &e) == -1)
      return -1;
    if (e.host_offset >= 0 && !(e.flags & IMAGE_EXTENT_ZERO)) {
      struct image *owner = img;
      unsigned i;
      for (i = 0; i < e.depth; i++)
        owner = owner->backing;
      posix_fadvise (owner->fd, e.host_offset, (off_t) e.length,
                     POSIX_FADV_WILLNEED);
    }
    offset += e.length;
    count -= e.length;
  }
  return 0;
}

/* ---- information, check, create, header changes ------------------------- */

void
image_get_info (struct image *img, struct image_info *info)
{
  struct stat st;

  memset (info, 0, sizeof *info);
  info->filename = img->filename;
  info->format = img->drv->name;
  info->virtual_size = img->size;
  info->readonly = img->readonly;
  if (fstat (img->fd, &st) == 0) {
    info->actual_size = (uint64_t) st.st_blocks * 512;
    info->file_size = (uint64_t) st.st_size;
  }
  info->backing_filename = img->backing_filename;
  info->full_backing_filename = img->full_backing_filename;
  info->backing_format = img->backing_format;
  img->drv->get_info (img, info);
}

void
image_get_stats (struct image *img, struct image_stats *st)
{
  struct stat s;

  memset (st, 0, sizeof *st);
  st->backing_read_bytes = __atomic_load_n (&img->backing_read_bytes,
                                            __ATOMIC_RELAXED);
  if (fstat (img->fd, &s) == 0)
    st->allocated_bytes = (uint64_t) s.st_blocks * 512;
  if (img->drv->cache_stats)
    img->drv->cache_stats (img, st);
}

int
image_check (struct image *img, unsigned flags,
             struct image_check_result *result,
             image_report_fn report, void *opaque)
{
  memset (result, 0, sizeof *result);
  if (flags && img->readonly)
    return image_errf (img, EROFS,
                       "cannot repair an image opened read-only");
  if (img->drv->check == NULL)
    return image_errf (img, ENOTSUP, "format %s has no consistency check",
                       img->drv->name);
  return img->drv->check (img, flags, result, report, opaque);
}

/* Set once a driver's create has made (or truncated) the file: only then
 * does a failure remove it.  A create refused for a bad option leaves an
 * existing file alone. */
static _Thread_local bool create_touched_file;

/* Empties an existing file that a create replaces, once it is locked
 * as qemu-img create locks it: replacing an image that someone reads or
 * writes is refused.  (A block device is not truncated, as O_TRUNC
 * would not.) */
static int
create_over_existing (int fd, const char *filename)
{
  struct stat st;

  if (lock_for_create (fd, filename) == -1)
    return -1;
  if (fstat (fd, &st) == -1)
    return image_err (errno, "%s: stat: %s", filename, strerror (errno));
  if (S_ISREG (st.st_mode) && ftruncate (fd, 0) == -1)
    return image_err (errno, "%s: truncate: %s", filename, strerror (errno));
  return 0;
}

int
image_create_file (const char *filename)
{
  int fd = open (filename, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0644);

  if (fd == -1 && errno == EEXIST) {
    fd = open (filename, O_RDWR | O_CLOEXEC);
    if (fd >= 0 && create_over_existing (fd, filename) == -1) {
      int e = errno;
      close (fd);
      errno = e;
      return -1;
    }
  }
  if (fd == -1)
    return image_err (errno, "%s: %s", filename, strerror (errno));
  create_touched_file = true;
  return fd;
}

/* ---- the file's length ----------------------------------------------- */

/* The file grows in steps of this much (or a cluster, if larger). */
#define GROW_STEP (1ULL << 20)

int
image_grow_file (struct image *img, uint64_t *length, uint64_t end,
                 uint64_t cluster_size)
{
  uint64_t step = MAX (GROW_STEP, cluster_size), target;

  if (end <= *length)
    return 0;
  if (!round_up_checked (end, step, &target) || target > INT64_MAX)
    return image_errf (img, EFBIG, "the file would grow past 2^63 bytes");
  /* The new space is a hole until written (and parts of new clusters
   * stay one). */
  image_host_may_have_holes (img);
  if (ftruncate (img->fd, (off_t) target) == -1)
    return image_err_sys (img, "growing the file");
  *length = target;
  return 0;
}

int
image_trim_file (struct image *img, uint64_t *length, uint64_t end)
{
  if (*length <= end)
    return 0;
  if (ftruncate (img->fd, (off_t) end) == -1 || host_sync (img->fd) == -1)
    return image_err_sys (img, "truncate");
  *length = end;
  return 0;
}

int
image_create_finish (int fd, const char *filename, uint64_t end,
                     uint64_t data, uint64_t data_bytes,
                     const struct image_create_opts *opts)
{
  if (ftruncate (fd, (off_t) end) == -1)
    return image_err (errno, "%s: truncate: %s", filename, strerror (errno));
  if (opts->prealloc >= IMAGE_PREALLOC_FALLOC &&
      host_preallocate (fd, data, data_bytes,
                        opts->prealloc == IMAGE_PREALLOC_FULL,
                        opts->progress, opts->progress_opaque) == -1)
    return image_err (errno, "%s: preallocation: %s", filename,
                      strerror (errno));
  if (fsync (fd) == -1)
    return image_err (errno, "%s: fsync: %s", filename, strerror (errno));
  return 0;
}

int
image_inspect_backing (const char *filename,
                       const struct image_create_opts *opts,
                       uint64_t *size, const char **format)
{
  struct image_open_opts bopts = {
    .format = opts->backing_format,
    /* As qemu-img create: a base someone writes or serves can still be
     * given an overlay (whoever writes it must not, but that is not for
     * a create to enforce). */
    .flags = IMAGE_OPEN_READONLY | IMAGE_OPEN_NO_BACKING |
             IMAGE_OPEN_FORCE_SHARE,
  };
  CLEANUP_FREE char *path = image_resolve_backing (filename,
                                                    opts->backing_file);
  struct image *bimg;

  if (path == NULL)
    return -1;
  bimg = image_open (path, &bopts);
  if (bimg == NULL)
    return image_err (image_errno (), "%s: backing file: %s", filename,
                      image_error ());
  *size = bimg->size;
  *format = bimg->drv->name;
  image_close (bimg);
  return 0;
}

int
image_create (const char *filename, const struct image_create_opts *opts)
{
  const char *format = opts->format ? opts->format : IMAGE_DEFAULT_FORMAT;
  const struct driver *drv = driver_by_name (format);
  struct stat st;

  if (drv == NULL)
    return image_err (EINVAL, "%s: unknown format '%s' (known: %s)",
                      filename, format, IMAGE_FORMATS);
  if (stat (filename, &st) == 0 && S_ISDIR (st.st_mode))
    return image_err (EISDIR, "%s: is a directory", filename);
  create_touched_file = false;
  if (drv->create (filename, opts) == -1) {
    int e = errno;
    if (create_touched_file)
      unlink (filename);
    errno = e;
    return -1;
  }
  return 0;
}

int
image_set_backing (struct image *img, const char *backing_file,
                   const char *backing_format)
{
  if (check_writable (img, "change backing file") == -1)
    return -1;
  if (img->drv->set_backing == NULL)
    return image_errf (img, ENOTSUP,
                       "format %s cannot have a backing file",
                       img->drv->name);
  return img->drv->set_backing (img, backing_file, backing_format);
}

int
image_make_empty (struct image *img)
{
  if (check_writable (img, "make empty") == -1)
    return -1;
  if (img->drv->make_empty == NULL)
    return image_errf (img, ENOTSUP, "format %s cannot be emptied",
                       img->drv->name);
  return img->drv->make_empty (img);
}
