/* SPDX-License-Identifier: BSD-3-Clause */
/* What only qcow2 has, dispatched: internal snapshots listed
 * (qcow2-snapshot.c), created, applied and deleted (qcow2-snapshot-ops.c). */
#include <config.h>

#include <errno.h>
#include <string.h>

#include "internal.h"

int
image_snapshots (struct image *img, image_snapshot_fn fn, void *opaque)
{
  if (img->drv->list_snapshots == NULL)
    return 0;
  return img->drv->list_snapshots (img, fn, opaque);
}

/* The checks the three snapshot changes share. */
static int
can_change (struct image *img, void *op)
{
  if (op == NULL)
    return error_file (img, ENOTSUP, "format %s has no internal snapshots",
                       img->drv->name);
  if (img->readonly)
    return error_file (img, EROFS, "cannot change the snapshots of an "
                       "image opened read-only");
  return 0;
}

int
image_snapshot_create (struct image *img, const char *name)
{
  if (can_change (img, img->drv->snapshot_create) == -1)
    return -1;
  return img->drv->snapshot_create (img, name);
}

int
image_snapshot_apply (struct image *img, const char *id_or_name)
{
  if (can_change (img, img->drv->snapshot_apply) == -1)
    return -1;
  return img->drv->snapshot_apply (img, id_or_name);
}

int
image_snapshot_delete (struct image *img, const char *name)
{
  if (can_change (img, img->drv->snapshot_delete) == -1)
    return -1;
  return img->drv->snapshot_delete (img, name);
}
