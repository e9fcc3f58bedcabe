/* SPDX-License-Identifier: BSD-3-Clause */
/* image_amend: what qemu-img amend changes.  The size and the backing
 * file are every format's (amend may name the backing file and format
 * only as they are: rebase changes them); the format's own options are
 * its driver's (drv->amend: qcow2's compat and lazy_refcounts in
 * qcow2-amend.c), which calls amend_common where qemu-img does the
 * common part.  A format without drv->amend takes no amendment at all,
 * as qemu-img refuses it for QED and raw.
 */
#include <config.h>

#include <errno.h>
#include <string.h>

#include "internal.h"

/* As qemu-img: the backing file and format may only be named as they
 * are. */
static int
amend_backing (struct image *img, const struct image_create_opts *o)
{
  const char *file = img->backing_filename, *fmt = img->backing_format;

  if ((o->backing_file && (file == NULL || strcmp (o->backing_file, file))) ||
      (o->backing_format && (fmt == NULL || strcmp (o->backing_format, fmt))))
    return error_file (img, EINVAL, "cannot amend the backing file "
                       "(cowbd-img rebase can change it)");
  return 0;
}

int
amend_common (struct image *img, const struct image_create_opts *opts)
{
  if (opts->size && opts->size != img->size &&
      image_resize (img, opts->size, IMAGE_PREALLOC_OFF,
                    IMAGE_RESIZE_SHRINK) == -1)
    return -1;
  return amend_backing (img, opts);
}

int
image_amend (struct image *img, const struct image_create_opts *opts)
{
  if (img->drv->amend == NULL)
    return error_file (img, ENOTSUP, "format %s does not support option "
                       "amendment", img->drv->name);
  if (img->readonly)
    return error_file (img, EROFS, "cannot amend an image opened "
                       "read-only");
  return img->drv->amend (img, opts);
}
