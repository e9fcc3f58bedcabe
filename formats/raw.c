/* SPDX-License-Identifier: BSD-3-Clause */
/* raw: the image is the file.  Zeroing and trim go to fallocate, extents
 * come from SEEK_DATA / SEEK_HOLE.  raw has no magic and no backing file.
 */
#include <config.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static int
raw_open (struct image *img, const struct image_open_opts *opts)
{
  if (source_size (img->src, &img->size) == -1)
    return error_syscall (img, "stat");
  return 0;
}

static int
raw_close (struct image *img)
{
  if (!img->readonly && host_sync_image (img) == -1)
    return error_syscall (img, "fdatasync");
  return 0;
}

static int
raw_flush (struct image *img)
{
  if (host_sync_image (img) == -1)
    return error_syscall (img, "fdatasync");
  return 0;
}

static int
raw_pread (struct image *img, void *buf, size_t count, uint64_t offset)
{
  if (source_pread (img->src, buf, count, offset) == -1)
    return error_syscall (img, "read");
  return 0;
}

static int
raw_pwrite (struct image *img, const void *buf, size_t count,
            uint64_t offset, unsigned flags)
{
  if (source_pwrite (img->src, buf, count, offset) == -1)
    return error_syscall (img, "write");
  return (flags & IMAGE_FUA) ? raw_flush (img) : 0;
}

static int
raw_pread_nowait (struct image *img, void *buf, size_t count,
                  uint64_t offset)
{
  return host_pread_nowait (img, buf, count, offset);
}

static int
raw_pwrite_nowait (struct image *img, const void *buf, size_t count,
                   uint64_t offset, unsigned flags)
{
  if (host_pwrite_nowait (img, buf, count, offset) == -1)
    return -1;
  return (flags & IMAGE_FUA) ? raw_flush (img) : 0;
}

static int
raw_zero (struct image *img, uint64_t count, uint64_t offset,
          unsigned flags)
{
  bool may_trim = flags & IMAGE_MAY_TRIM;

  host_may_have_holes (img);
  if (flags & IMAGE_FAST_ZERO) {
    /* Only fallocate is fast; writing a zero buffer is not. */
    if (!(may_trim && host_punch_hole (img->fd, count, offset) == 0) &&
        host_write_zeroes_fast (img->fd, count, offset) == -1)
      return error_file (img, ENOTSUP,
                         "fast zero: the host file cannot zero quickly");
  }
  else if (host_write_zeroes (img->fd, count, offset, may_trim) == -1)
    return error_syscall (img, "write zeroes");
  return (flags & IMAGE_FUA) ? raw_flush (img) : 0;
}

static int
raw_trim (struct image *img, uint64_t count, uint64_t offset,
          unsigned flags)
{
  /* Trim is advisory: a filesystem that cannot punch keeps the data. */
  host_may_have_holes (img);
  if (host_punch_hole (img->fd, count, offset) == -1 &&
      errno != EOPNOTSUPP)
    return error_syscall (img, "punch hole");
  return (flags & IMAGE_FUA) ? raw_flush (img) : 0;
}

static int
raw_block_status (struct image *img, uint64_t offset, uint64_t count,
                  struct drv_status *st)
{
  bool is_data = true;

  st->length = count;
  if (!host_dense (img) &&
      source_data_status (img->src, offset, count, st->quick, &is_data,
                        &st->length) == -1)
    return error_syscall (img, "SEEK_DATA");
  st->kind = is_data ? DRV_DATA : DRV_ZERO;
  st->host_offset = (int64_t) offset;
  st->host_checked = true;
  return 0;
}

static int
raw_create (const char *filename, const struct image_create_opts *opts)
{
  int fd, r;

  if (opts->backing_file)
    return error_set (EINVAL, "%s: format raw cannot have a backing file",
                      filename);
  if (opts->prealloc == IMAGE_PREALLOC_METADATA)
    return error_set (EINVAL, "%s: format raw has no metadata to "
                      "preallocate (use falloc or full)", filename);
  if (create_refuse_others (filename, &raw_driver, opts, true) == -1)
    return -1;

  fd = create_new_file (filename);
  if (fd == -1)
    return -1;
  r = create_finish (fd, filename, opts->size, 0, opts->size, opts);
  if (close (fd) == -1 && r == 0)
    r = error_set (errno, "%s: close: %s", filename, strerror (errno));
  return r;
}

/* The file's length is the size: one ftruncate, which a crash leaves
 * done or not.  Preallocation fills the new part afterwards (it reads as
 * zeros either way). */
static int
raw_resize (struct image *img, uint64_t size, enum image_prealloc prealloc,
            bool zero_new)
{
  uint64_t old = img->size;

  if (prealloc == IMAGE_PREALLOC_METADATA)
    return error_file (img, EINVAL, "format raw has no metadata to "
                       "preallocate (use falloc or full)");
  if (ftruncate (img->fd, (off_t) size) == -1)
    return error_syscall (img, "ftruncate");
  img->size = size;
  host_may_have_holes (img);
  if (prealloc != IMAGE_PREALLOC_OFF &&
      host_preallocate (img->fd, old, size - old,
                        prealloc == IMAGE_PREALLOC_FULL, NULL, NULL) == -1)
    return error_syscall (img, "preallocating the new part");
  return raw_flush (img);
}

const struct driver raw_driver = {
  .name = "raw",
  .open = raw_open,
  .close = raw_close,
  .pread = raw_pread,
  .pwrite = raw_pwrite,
  .zero = raw_zero,
  .trim = raw_trim,
  .flush = raw_flush,
  .pread_nowait = raw_pread_nowait,
  .pwrite_nowait = raw_pwrite_nowait,
  .block_status = raw_block_status,
  .create = raw_create,
  .resize = raw_resize,
};
