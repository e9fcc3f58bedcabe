/* SPDX-License-Identifier: BSD-3-Clause */
/* The backing chain: probing a file's format, opening an image and the
 * chain below it (loops and depth refused, each backing image read-only
 * unless IMAGE_OPEN_BACKING_RW), closing it, and reading through it.
 *
 * A backing chain is a list of images linked through img->backing, each
 * owned by the image above it. */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
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

/* ---- probing --------------------------------------------------------- */

/* Probed in this order; raw, which has no magic, last. */
static const struct driver *const drivers[] = {
  &qed_driver,
  &qcow2_driver,
  &raw_driver,
};

const struct driver *
chain_driver (const char *name)
{
  size_t i;

  for (i = 0; i < sizeof drivers / sizeof drivers[0]; i++)
    if (strcmp (drivers[i]->name, name) == 0)
      return drivers[i];
  return NULL;
}

const struct driver *
chain_driver_at (unsigned i)
{
  return i < sizeof drivers / sizeof drivers[0] ? drivers[i] : NULL;
}

const struct driver *
chain_probe_buf (const uint8_t *buf, size_t len)
{
  size_t i;

  for (i = 0; i < sizeof drivers / sizeof drivers[0]; i++)
    if (drivers[i]->probe && drivers[i]->probe (buf, len))
      return drivers[i];
  return &raw_driver;
}

/* Probes an open source from its first sector (what probe.c guards). */
static const struct driver *
probe_source (struct source *src)
{
  uint8_t buf[512];
  uint64_t size;
  size_t n;

  if (source_size (src, &size) == -1)
    return NULL;
  n = (size_t) MIN (size, (uint64_t) sizeof buf);
  if (source_pread (src, buf, n, 0) == -1)
    return NULL;
  return chain_probe_buf (buf, n);
}

const char *
image_probe (const char *filename)
{
  const char *why = NULL;
  struct source *src = source_open (filename, true, NULL, &why);
  const struct driver *drv;

  if (src == NULL) {
    if (!source_is_uri (filename))
      error_set (errno, "%s: %s", filename, why);
    return NULL;
  }
  drv = probe_source (src);
  if (drv == NULL)
    error_set (errno, "%s: reading the header: %s", filename,
               strerror (errno));
  source_close (src);
  return drv ? drv->name : NULL;
}

/* ---- open and close --------------------------------------------------- */

char *
image_resolve_backing (const char *overlay, const char *backing)
{
  char *r;

  /* A URI is never relative, and nothing is relative to one. */
  if (backing[0] == '/' || strchr (overlay, '/') == NULL ||
      source_is_uri (backing) || source_is_uri (overlay))
    r = strdup (backing);
  else {
    const char *slash = strrchr (overlay, '/');
    int dirlen = (int) (slash - overlay);
    if (asprintf (&r, "%.*s/%s", dirlen, overlay, backing) == -1)
      r = NULL;
  }
  if (r == NULL)
    error_set (ENOMEM, "%s: out of memory", overlay);
  return r;
}

/* One (device, inode) per image of the chain being opened, to refuse
 * loops. */
struct chain_seen {
  struct image_file_id id[IMAGE_MAX_CHAIN + 1];
};

static void chain_free (struct image *img);
/* Images are regular files or block devices (shared/DESIGN.md): a
 * directory, FIFO or character device is refused, as qemu's file driver
 * refuses it, not read as an empty or endless raw image. */
static int
check_file_type (struct image *img, const char *referrer)
{
  struct stat st;

  if (fstat (img->fd, &st) == -1)
    return error_syscall (img, "stat");
  if (S_ISREG (st.st_mode) || S_ISBLK (st.st_mode))
    return 0;
  if (referrer)
    return error_set (EINVAL, "%s: backing file %s: not a regular file or "
                      "block device", referrer, img->filename);
  return error_file (img, EINVAL, "not a regular file or block device");
}

static struct image *chain_open (const char *filename,
                                 const struct image_open_opts *opts,
                                 unsigned depth, struct chain_seen *seen,
                                 const char *referrer);

static const struct driver *
choose_driver (struct image *img, const char *format)
{
  const struct driver *drv;

  if (format == NULL || strcmp (format, "auto") == 0) {
    drv = probe_source (img->src);
    if (drv == NULL)
      error_syscall (img, "reading the header");
    return drv;
  }
  drv = chain_driver (format);
  if (drv == NULL)
    error_file (img, EINVAL, "unknown format '%s' (known: %s)", format,
                IMAGE_FORMATS);
  return drv;
}

/* Refuses a file already seen in this chain. */
static int
check_loop (struct image *img, unsigned depth, struct chain_seen *seen)
{
  unsigned i;

  if ((img->fd >= 0 ? fileid_of_fd (img->fd, &seen->id[depth])
       : image_file_id_path (img->filename, &seen->id[depth])) == -1)
    return error_syscall (img, "stat");
  for (i = 0; i < depth; i++)
    if (image_file_id_equal (&seen->id[i], &seen->id[depth]))
      return error_file (img, ELOOP,
                         "backing chain loop: this file is its own backing "
                         "file (through %u image(s))", depth - i);
  return 0;
}

/* Takes img's backing image from the cache (see image.h) and checks
 * that it is what img needs. */
static int
get_shared_backing (struct image *img, const struct image_open_opts *bopts)
{
  const struct image_backing_cache *bc = bopts->backing_cache;
  struct image_open_opts o = *bopts;
  char prefix[PATH_MAX + 64];
  struct image *b;

  o.flags &= ~(unsigned) (CHAIN_OPEN_PROBED_BACKING |
                          CHAIN_OPEN_QED_REFERRER);
  b = bc->get (bc->opaque, img->full_backing_filename, &o);
  if (b == NULL) {
    snprintf (prefix, sizeof prefix, "%s: backing file ", img->filename);
    return error_prefix (prefix);
  }
  img->backing = b;
  img->backing_cache = bc;      /* chain_close gives it back */
  if (image_check_confined (b, bopts->backing_dirs) == -1)
    return -1;
  if (!b->readonly)
    return error_file (img, EBUSY, "backing file %s: image is in use "
                       "(open for writing in this process)", b->filename);
  if (bopts->format && strcmp (bopts->format, b->drv->name) != 0)
    return error_file (img, EINVAL, "backing file %s is open as %s, but "
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
  if (img->full_backing_filename == NULL ||
      confine_check (img->filename, img->backing_filename,
                     img->full_backing_filename, opts->backing_dirs) == -1)
    return -1;
  if (opts->flags & IMAGE_OPEN_NO_BACKING)
    return 0;
  /* Whoever serves a remote image does not choose our local files. */
  if (img->fd < 0 && !source_is_uri (img->backing_filename))
    return error_file (img, EPERM, "a remote image cannot name a local "
                       "backing file (%s)", img->backing_filename);
  if (img->depth + 1 > IMAGE_MAX_CHAIN)
    return error_file (img, ELOOP, "backing chain deeper than %d images",
                       IMAGE_MAX_CHAIN);

  bopts.format = img->backing_format;
  /* The backing image at depth backing_rw_depth (default 1) opens
   * read-write with IMAGE_OPEN_BACKING_RW; the flag passes down to it. */
  bopts.flags = IMAGE_OPEN_READONLY |
    (opts->flags & (IMAGE_OPEN_FORCE_SHARE | IMAGE_OPEN_BACKING_RW));
  if ((opts->flags & IMAGE_OPEN_BACKING_RW) &&
      img->depth + 1 == MAX (opts->backing_rw_depth, 1u))
    bopts.flags = 0;
  if (bopts.format == NULL)     /* probed: see probe.c, rule 2 */
    bopts.flags |= CHAIN_OPEN_PROBED_BACKING |
      (img->drv == &qed_driver ? CHAIN_OPEN_QED_REFERRER : 0);
  if (opts->backing_cache && (bopts.flags & IMAGE_OPEN_READONLY) &&
      !(bopts.flags & IMAGE_OPEN_FORCE_SHARE)) {
    if (get_shared_backing (img, &bopts) == -1)
      return -1;
  }
  else {
    bopts.backing_cache = NULL;
    img->backing = chain_open (img->full_backing_filename, &bopts,
                               img->depth + 1, seen, img->filename);
    if (img->backing == NULL)
      return -1;
  }
  if (img->backing_format == NULL) {
    img->backing_format = strdup (img->backing->drv->name);
    if (img->backing_format == NULL)
      return error_file (img, ENOMEM, "out of memory");
  }
  return 0;
}

/* Opens img's host file or remote export. */
static int
open_source (struct image *img, const struct image_open_opts *opts,
             const char *referrer)
{
  struct source_opts sopts = {
    .timeout_ms = opts->remote_timeout_ms,
    .base_cache_dir = opts->base_cache_dir,
    .base_cache_size = opts->base_cache_size,
  };
  char prefix[PATH_MAX + 32];
  const char *why = NULL;

  img->src = source_open (img->filename, img->readonly, &sopts, &why);
  if (img->src) {
    img->fd = img->src->fd;
    return 0;
  }
  if (!source_is_uri (img->filename))
    return referrer
      ? error_set (errno, "%s: backing file %s: %s", referrer,
                   img->filename, why)
      : error_set (errno, "%s: %s", img->filename, why);
  /* source_open said what failed, naming the URI */
  if (referrer) {
    snprintf (prefix, sizeof prefix, "%s: backing file ", referrer);
    error_prefix (prefix);
  }
  return -1;
}

static struct image *
chain_open (const char *filename, const struct image_open_opts *opts,
            unsigned depth, struct chain_seen *seen, const char *referrer)
{
  struct image *img;

  img = calloc (1, sizeof *img);
  if (img == NULL) {
    error_set (ENOMEM, "%s: out of memory", filename);
    return NULL;
  }
  img->fd = -1;
  img->depth = depth;
  img->chain_trusted = opts->backing_dirs == NULL;
  img->host_dense = -1;
  img->readonly = opts->flags & IMAGE_OPEN_READONLY;
  img->filename = strdup (filename);
  if (img->filename == NULL) {
    error_set (ENOMEM, "%s: out of memory", filename);
    goto err;
  }

  if (open_source (img, opts, referrer) == -1)
    goto err;
  if (img->fd >= 0 && check_file_type (img, referrer) == -1)
    goto err;
  if (img->fd >= 0 && lock_image (img, opts->flags) == -1) {
    if (referrer) {
      char prefix[PATH_MAX + 32];
      snprintf (prefix, sizeof prefix, "%s: backing file ", referrer);
      error_prefix (prefix);
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
  chain_free (img);
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
    error_set (EINVAL, "%s: force-share can only be used with read-only "
               "opens", filename);
    return NULL;
  }
  return chain_open (filename, opts ? opts : &defaults, 0, &seen, NULL);
}

/* Closes the driver (if opened), the backing chain and the file. */
static int
chain_close (struct image *img)
{
  int r = 0;

  if (img->drv && img->drv->close (img) == -1)
    r = -1;
  /* Whatever the close wrote, it cannot vouch for what was lost. */
  if (img->drv && !img->readonly && sticky_failed (img))
    r = sticky_check (img);
  if (img->backing && img->backing_cache)
    img->backing_cache->put (img->backing_cache->opaque, img->backing);
  else if (img->backing && chain_close (img->backing) == -1 && r == 0)
    r = -1;
  if (source_close (img->src) == -1 && r == 0)
    r = error_syscall (img, "close");
  probe_guard_free (img);
  free (img->filename);
  free (img->backing_filename);
  free (img->backing_format);
  free (img->full_backing_filename);
  free (img);
  return r;
}

static void
chain_free (struct image *img)
{
  struct error_saved e;

  /* Keep the error that made the open fail, not a cleanup's. */
  error_save (&e);
  chain_close (img);
  error_restore (&e);
}

int
image_close (struct image *img)
{
  if (img == NULL)
    return 0;
  return chain_close (img);
}

/* ---- backing reads ------------------------------------------------------ */

/* Reads the part of [offset, offset + count) inside img's backing image
 * with its driver's pread, or (nowait) pread_nowait; zeros the rest.
 * Always inline: each caller gets its own copy with nowait constant. */
static inline __attribute__ ((always_inline)) int
read_backing (struct image *img, void *buf, size_t count, uint64_t offset,
              bool nowait)
{
  struct image *b = img->backing;
  size_t n = 0;

  if (b && offset < b->size) {
    n = (size_t) MIN ((uint64_t) count, b->size - offset);
    if (!nowait && b->drv->pread (b, buf, n, offset) == -1)
      return -1;
    if (nowait && (b->drv->pread_nowait == NULL ||
                   b->drv->pread_nowait (b, buf, n, offset) == -1))
      return error_again ();
    __atomic_fetch_add (&img->backing_read_bytes, n, __ATOMIC_RELAXED);
  }
  if (n < count)
    memset ((char *) buf + n, 0, count - n);
  return 0;
}

int
chain_read_backing (struct image *img, void *buf, size_t count,
                    uint64_t offset)
{
  return read_backing (img, buf, count, offset, false);
}

int
chain_read_backing_nowait (struct image *img, void *buf, size_t count,
                           uint64_t offset)
{
  return read_backing (img, buf, count, offset, true);
}

/* The run at offset of the chain below img: the image that answers (NULL:
 * none, the range reads as zeros) and its status. */
static int
backing_status (struct image *img, uint64_t offset, uint64_t count,
                struct image **owner, struct drv_status *st)
{
  struct image *b = img->backing;

  for (;;) {
    if (b == NULL || offset >= b->size) {
      *owner = NULL;
      st->kind = DRV_ZERO;
      st->length = count;
      return 0;
    }
    count = MIN (count, b->size - offset);
    *st = (struct drv_status) { .host_offset = -1, .quick = true };
    if (b->drv->block_status (b, offset, count, st) == -1)
      return -1;
    assert (st->length > 0 && st->length <= count);
    count = st->length;
    *owner = b;
    if (st->kind != DRV_UNALLOCATED)
      return 0;
    b = b->backing;
  }
}

/* Reads one run of owner's data into buf. */
static int
backing_read_run (struct image *owner, const struct drv_status *st,
                  uint8_t *buf, uint64_t offset)
{
  if (st->compressed || st->host_offset < 0)
    return owner->drv->pread (owner, buf, st->length, offset);
  if (source_pread (owner->src, buf, st->length, (uint64_t) st->host_offset)
      == -1)
    return error_file (owner, errno, "reading offset %" PRIu64 ": %s",
                       offset, strerror (errno));
  return 0;
}

/* Copies one run of owner's data (st, at guest offset) into img's file at
 * dest: in the kernel where owner is a local file holding the run as is,
 * else through memory.  0 or -1 (set). */
static int
copy_run (struct image *img, struct image *owner,
          const struct drv_status *st, uint64_t offset, uint64_t dest)
{
  CLEANUP_FREE uint8_t *buf = NULL;

  if (owner->fd >= 0 && !st->compressed && st->host_offset >= 0) {
    if (host_copy_range (owner->fd, (uint64_t) st->host_offset, img->fd,
                         dest, st->length) == 0)
      return 0;
    if (errno != ENOTSUP)
      return error_file (img, errno, "copying backing data of offset %"
                         PRIu64 " into 0x%" PRIx64 ": %s", offset, dest,
                         strerror (errno));
  }
  buf = malloc (st->length);
  if (buf == NULL)
    return error_file (img, ENOMEM, "out of memory");
  if (backing_read_run (owner, st, buf, offset) == -1)
    return -1;
  if (host_pwrite (img->fd, buf, st->length, dest) == -1)
    return error_file (img, errno, "writing new clusters at 0x%" PRIx64
                       ": %s", dest, strerror (errno));
  return 0;
}

int
chain_copy_fill (struct image *img, uint64_t offset, uint64_t len,
                 uint64_t dest, bool *copied)
{
  uint64_t done = 0;

  *copied = false;
  while (done < len) {
    struct image *owner;
    struct drv_status st;

    if (backing_status (img, offset + done, len - done, &owner, &st) == -1)
      return -1;
    if (st.kind == DRV_DATA) {
      if (copy_run (img, owner, &st, offset + done, dest + done) == -1)
        return -1;
      __atomic_fetch_add (&img->backing_read_bytes, st.length,
                          __ATOMIC_RELAXED);
      *copied = true;
    }
    done += st.length;
  }
  return 0;
}
