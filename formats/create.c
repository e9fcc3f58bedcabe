/* SPDX-License-Identifier: BSD-3-Clause */
/* Creating images: the file a driver's create writes, its end (size,
 * preallocation, sync), the backing file it names, and image_create,
 * which removes a half-made file on any failure. */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdarg.h>
#include <limits.h>
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
    return error_set (errno, "%s: stat: %s", filename, strerror (errno));
  if (S_ISREG (st.st_mode) && ftruncate (fd, 0) == -1)
    return error_set (errno, "%s: truncate: %s", filename, strerror (errno));
  return 0;
}

int
create_new_file (const char *filename)
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
    return error_set (errno, "%s: %s", filename, strerror (errno));
  create_touched_file = true;
  return fd;
}

int
create_finish (int fd, const char *filename, uint64_t end,
               uint64_t data, uint64_t data_bytes,
               const struct image_create_opts *opts)
{
  if (ftruncate (fd, (off_t) end) == -1)
    return error_set (errno, "%s: truncate: %s", filename, strerror (errno));
  if (opts->prealloc >= IMAGE_PREALLOC_FALLOC &&
      host_preallocate (fd, data, data_bytes,
                        opts->prealloc == IMAGE_PREALLOC_FULL,
                        opts->progress, opts->progress_opaque) == -1)
    return error_set (errno, "%s: preallocation: %s", filename,
                      strerror (errno));
  if (fsync (fd) == -1)
    return error_set (errno, "%s: fsync: %s", filename, strerror (errno));
  return 0;
}

int
create_inspect_backing (const char *filename,
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
  char prefix[PATH_MAX + 32];

  if (path == NULL)
    return -1;
  bopts.remote_timeout_ms = opts->remote_timeout_ms;
  bimg = image_open (path, &bopts);
  if (bimg == NULL) {
    /* image_error () is the buffer error_set writes: not an argument */
    snprintf (prefix, sizeof prefix, "%s: backing file: ", filename);
    return error_prefix (prefix);
  }
  *size = bimg->size;
  *format = bimg->drv->name;
  image_close (bimg);
  return 0;
}

int
image_create (const char *filename, const struct image_create_opts *opts)
{
  const char *format = opts->format ? opts->format : IMAGE_DEFAULT_FORMAT;
  const struct driver *drv = chain_driver (format);
  struct stat st;

  if (drv == NULL)
    return error_set (EINVAL, "%s: unknown format '%s' (known: %s)",
                      filename, format, IMAGE_FORMATS);
  if (stat (filename, &st) == 0 && S_ISDIR (st.st_mode))
    return error_set (EISDIR, "%s: is a directory", filename);
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

