/* SPDX-License-Identifier: BSD-3-Clause */
/* What only qcow2 has, dispatched: the listing of internal snapshots
 * (qcow2-snapshot.c) and lazy refcounts switched (qcow2-amend.c). */
#include <config.h>

#include <errno.h>

#include "internal.h"

int
image_snapshots (struct image *img, image_snapshot_fn fn, void *opaque)
{
  if (img->drv->list_snapshots == NULL)
    return 0;
  return img->drv->list_snapshots (img, fn, opaque);
}

int
image_set_lazy_refcounts (struct image *img, bool on)
{
  if (img->readonly)
    return error_file (img, EROFS, "cannot amend an image opened "
                       "read-only");
  if (img->drv->set_lazy_refcounts == NULL)
    return error_file (img, ENOTSUP, "format %s has no lazy refcounts",
                       img->drv->name);
  return img->drv->set_lazy_refcounts (img, on);
}
