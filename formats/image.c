/* SPDX-License-Identifier: BSD-3-Clause */
/* The public calls on an open image: every request is validated here,
 * once, before the driver sees it (drivers trust their arguments); then
 * information, check and header changes.
 *
 * The rest of image.h is kept by job: errors.c, chain.c (probing,
 * opening and closing the chain), extents.c, create.c.
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
int
request_in_range (struct image *img, uint64_t count, uint64_t offset,
                  int errnum, const char *op)
{
  if (RANGE_OUTSIDE (offset, count, img->size))
    return error_file (img, errnum,
                       "%s of %" PRIu64 " bytes at offset %" PRIu64
                       " lies past the end of the image (%" PRIu64 " bytes)",
                       op, count, offset, img->size);
  return 0;
}

/* ---- the sticky error ------------------------------------------------- */

/* Since Linux 4.13 a failed fdatasync may drop the dirty pages it could
 * not write and report it once: a later sync then succeeds over lost
 * data.  So after any failed sync (or failed metadata write) no flush of
 * this open image may claim durability again; only a reopen, whose
 * automatic check starts from what the file really holds, can. */
void
sticky_set (struct image *img)
{
  int saved = errno;

  if (__atomic_exchange_n (&img->io_failed, 1, __ATOMIC_ACQ_REL) == 0)
    engine_warn ("%s: a sync or metadata write failed: every later flush "
                 "and FUA write fails until the image is reopened",
                 img->filename);
  errno = saved;
}

int
sticky_check (struct image *img)
{
  if (sticky_failed (img))
    return error_file (img, EIO, "an earlier sync or metadata write "
                       "failed: data written before it may be lost (until "
                       "the image is reopened)");
  return 0;
}

/* A request with FUA (or a flush) ends honestly: EIO if the image's
 * error became sticky, even while this request ran. */
static int
end_durable (struct image *img, unsigned flags, int r)
{
  if (r == 0 && (flags & IMAGE_FUA))
    return sticky_check (img);
  return r;
}

static int
check_writable (struct image *img, const char *op)
{
  if (img->readonly)
    return error_file (img, EROFS, "%s: image is opened read-only", op);
  return 0;
}

int
image_pread (struct image *img, void *buf, size_t count, uint64_t offset)
{
  if (request_in_range (img, count, offset, EINVAL, "read") == -1)
    return -1;
  if (count == 0)
    return 0;
  return img->drv->pread (img, buf, count, offset);
}

/* image_map_host for a range known to lie within img. */
static int
map_host (struct image *img, uint64_t count, uint64_t offset, int *fd,
          uint64_t *host_offset, uint64_t *contig)
{
  /* quick: a raw file's data may run on into a hole, which then goes
   * out as the zeros it reads as. */
  struct drv_status st = { .quick = true };
  struct image *b = img->backing;

  if (img->fd == -1)
    return 0;
  if (img->drv->block_status (img, offset, count, &st) == -1)
    return -1;
  if (st.kind == DRV_UNALLOCATED && b && offset < b->size)
    return map_host (b, MIN (st.length, b->size - offset), offset, fd,
                     host_offset, contig);
  if (st.kind != DRV_DATA || st.compressed || st.host_offset < 0)
    return 0;
  *fd = img->fd;
  *host_offset = (uint64_t) st.host_offset;
  *contig = st.length;
  return 1;
}

int
image_map_host (struct image *img, uint64_t count, uint64_t offset,
                int *fd, uint64_t *host_offset, uint64_t *contig)
{
  if (request_in_range (img, count, offset, EINVAL, "read") == -1)
    return -1;
  if (count == 0)
    return 0;
  return map_host (img, count, offset, fd, host_offset, contig);
}

/* The driver call of a change that passed its checks. */
static inline __attribute__ ((always_inline)) int
drv_change (struct image *img, enum probe_op op, const void *buf,
            uint64_t count, uint64_t offset, unsigned flags)
{
  if (probe_guarded (img, offset))
    return probe_guarded_op (img, op, buf, count, offset, flags);
  switch (op) {
  case PROBE_OP_WRITE:
    return img->drv->pwrite (img, buf, count, offset, flags);
  case PROBE_OP_ZERO:
    return img->drv->zero (img, count, offset, flags);
  default:
    return img->drv->trim (img, count, offset, flags);
  }
}

/* A write, write zeroes or trim (op, named what): validated, then
 * handed to the driver; inlined with op constant in each caller. */
static inline __attribute__ ((always_inline)) int
change (struct image *img, enum probe_op op, const char *what,
        const void *buf, uint64_t count, uint64_t offset, unsigned flags)
{
  if (check_writable (img, what) == -1 ||
      request_in_range (img, count, offset, ENOSPC, what) == -1)
    return -1;
  if ((flags & IMAGE_FUA) && sticky_check (img) == -1)
    return -1;
  if (count == 0)
    return (flags & IMAGE_FUA) ? image_flush (img) : 0;
  return end_durable (img, flags,
                      drv_change (img, op, buf, count, offset, flags));
}

int
image_pwrite (struct image *img, const void *buf, size_t count,
              uint64_t offset, unsigned flags)
{
  return change (img, PROBE_OP_WRITE, "write", buf, count, offset, flags);
}

int
image_write_compressed (struct image *img, const void *buf, size_t count,
                        uint64_t offset)
{
  if (check_writable (img, "compressed write") == -1 ||
      request_in_range (img, count, offset, ENOSPC,
                        "compressed write") == -1)
    return -1;
  if (img->drv->write_compressed == NULL)
    return error_file (img, EOPNOTSUPP, "compression is not supported for "
                       "this image format");
  if (count == 0)
    return 0;
  return img->drv->write_compressed (img, buf, count, offset);
}

int
image_zero (struct image *img, uint64_t count, uint64_t offset,
            unsigned flags)
{
  return change (img, PROBE_OP_ZERO, "write zeroes", NULL, count, offset,
                 flags);
}

int
image_trim (struct image *img, uint64_t count, uint64_t offset,
            unsigned flags)
{
  return change (img, PROBE_OP_TRIM, "trim", NULL, count, offset, flags);
}

int
image_flush (struct image *img)
{
  if (img->readonly)
    return 0;
  if (sticky_check (img) == -1)
    return -1;
  return end_durable (img, IMAGE_FUA, img->drv->flush (img));
}

int
image_pread_nowait (struct image *img, void *buf, size_t count,
                    uint64_t offset)
{
  if (RANGE_OUTSIDE (offset, count, img->size) || count == 0 ||
      img->drv->pread_nowait == NULL ||
      img->drv->pread_nowait (img, buf, count, offset) == -1)
    return error_again ();
  return 0;
}

int
image_pwrite_nowait (struct image *img, const void *buf, size_t count,
                     uint64_t offset, unsigned flags)
{
  if (img->readonly ||
      ((flags & IMAGE_FUA) && (!img->host_in_memory || sticky_failed (img))) ||
      RANGE_OUTSIDE (offset, count, img->size) || count == 0 ||
      probe_guarded (img, offset) ||
      img->drv->pwrite_nowait == NULL ||
      img->drv->pwrite_nowait (img, buf, count, offset, flags) == -1)
    return error_again ();
  return 0;
}

/* A flush only waits for I/O on a disk: on tmpfs fdatasync returns at
 * once and the metadata it writes goes to memory. */
int
image_flush_nowait (struct image *img)
{
  if (img->readonly)
    return 0;
  if (!img->host_in_memory || sticky_failed (img) ||
      img->drv->flush (img) == -1)
    return error_again ();
  return sticky_failed (img) ? error_again () : 0;
}

/* ---- information, check, create, header changes ------------------------- */

void
image_get_info (struct image *img, struct image_info *info)
{
  struct drv_info di = { .cluster_size = 0 };
  struct stat st;

  memset (info, 0, sizeof *info);
  info->filename = img->filename;
  info->format = img->drv->name;
  info->virtual_size = img->size;
  info->readonly = img->readonly;
  if (img->fd < 0)               /* a remote image */
    info->actual_size = info->file_size = img->size;
  else if (fstat (img->fd, &st) == 0) {
    info->actual_size = (uint64_t) st.st_blocks * 512;
    info->file_size = (uint64_t) st.st_size;
  }
  info->backing_filename = img->backing_filename;
  info->full_backing_filename = img->full_backing_filename;
  info->backing_format = img->backing_format;
  if (img->drv->get_info)
    img->drv->get_info (img, &di);
  info->cluster_size = di.cluster_size;
  info->dirty = di.dirty;
  info->specific = di.specific;
}

void
image_get_stats (struct image *img, struct image_stats *st)
{
  struct stat s;

  memset (st, 0, sizeof *st);
  st->backing_read_bytes = __atomic_load_n (&img->backing_read_bytes,
                                            __ATOMIC_RELAXED);
  if (img->fd >= 0 && fstat (img->fd, &s) == 0)
    st->allocated_bytes = (uint64_t) s.st_blocks * 512;
  if (img->drv->cache_stats)
    img->drv->cache_stats (img, st);
  for (; img; img = img->backing)
    if (img->src && img->src->ops->stats)
      img->src->ops->stats (img->src, &st->remote_fetched_bytes,
                            &st->remote_cache_hits,
                            &st->remote_cache_misses);
}

int
image_check (struct image *img, unsigned flags,
             struct image_check_result *result,
             image_report_fn report, void *opaque)
{
  memset (result, 0, sizeof *result);
  if (flags && img->readonly)
    return error_file (img, EROFS,
                       "cannot repair an image opened read-only");
  if (img->drv->check == NULL)
    return error_file (img, ENOTSUP, "format %s has no consistency check",
                       img->drv->name);
  return img->drv->check (img, flags, result, report, opaque);
}

int
image_set_backing (struct image *img, const char *backing_file,
                   const char *backing_format)
{
  if (check_writable (img, "change backing file") == -1)
    return -1;
  if (img->drv->set_backing == NULL)
    return error_file (img, ENOTSUP,
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
    return error_file (img, ENOTSUP, "format %s cannot be emptied",
                       img->drv->name);
  return img->drv->make_empty (img);
}
