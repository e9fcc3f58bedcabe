/* SPDX-License-Identifier: BSD-3-Clause */
/* image_resize: the checks every format shares, then the driver's resize.
 *
 * Growing must not make old data of the backing image visible: bytes
 * past the old end read zeros in qemu-img's model, but an overlay shorter
 * than its backing image would read the backing image's bytes there once
 * it is longer.  qemu (since 5.0) then writes the new part as zeros; so
 * do we, before the new size reaches the header (resize_zero_new), so
 * that a crash never leaves the new size with the backing data showing.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

void
crash_test_pause (void)
{
  const char *s = getenv ("COWBD_TEST_PAUSE");

  if (s && *s)
    usleep ((useconds_t) strtoul (s, NULL, 10));
}

int
resize_zero_new (struct image *img, uint64_t old_size)
{
  uint64_t off, n;

  /* In steps, so that a huge new part never needs one huge request. */
  for (off = old_size; off < img->size; off += n) {
    n = img->size - off;
    if (n > (1ULL << 30))
      n = 1ULL << 30;
    if (img->drv->zero (img, n, off, 0) == -1)
      return error_prefix ("zeroing the new part: ");
  }
  return img->drv->flush (img);
}

int
resize_set_size (struct image *img, uint64_t size, bool zero_new,
                 int (*write_size) (void *fmt, uint64_t size), void *fmt)
{
  uint64_t old = img->size;

  if (zero_new) {
    img->size = size;
    if (resize_zero_new (img, old) == -1) {
      img->size = old;
      return -1;
    }
  }
  crash_test_pause ();
  if (write_size (fmt, size) == -1) {
    img->size = old;
    return -1;
  }
  img->size = size;
  return 0;
}

/* Whether the new part of a grown image would read the backing image. */
static bool
backing_shows (struct image *img, uint64_t size)
{
  return size > img->size && img->backing &&
         image_size (img->backing) > img->size;
}

int
image_resize (struct image *img, uint64_t size, enum image_prealloc prealloc,
              unsigned flags)
{
  if (img->readonly)
    return error_file (img, EROFS, "cannot resize an image opened "
                       "read-only");
  if (img->drv->resize == NULL)
    return error_file (img, ENOTSUP, "format %s cannot be resized",
                       img->drv->name);
  if (size < img->size && !(flags & IMAGE_RESIZE_SHRINK))
    return error_file (img, EINVAL, "shrinking from %" PRIu64 " to %"
                       PRIu64 " bytes needs --shrink", img->size, size);
  if (size > INT64_MAX)
    return error_file (img, EFBIG, "size %" PRIu64 " is too large", size);
  if (size == img->size && prealloc == IMAGE_PREALLOC_OFF)
    return 0;
  if (prealloc != IMAGE_PREALLOC_OFF && size < img->size)
    return error_file (img, EINVAL, "preallocation applies to growing "
                       "only");
  return img->drv->resize (img, size, prealloc, backing_shows (img, size));
}
