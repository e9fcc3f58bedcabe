/* SPDX-License-Identifier: BSD-3-Clause */
/* What only qcow2 has, dispatched: internal snapshots listed
 * (qcow2-snapshot.c), created, applied and deleted (qcow2-snapshot-ops.c),
 * and lazy refcounts switched (qcow2-amend.c). */
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

int
image_set_compat (struct image *img, const char *compat)
{
  unsigned v;

  if (strcmp (compat, "0.10") == 0 || strcmp (compat, "v2") == 0)
    v = 2;
  else if (strcmp (compat, "1.1") == 0 || strcmp (compat, "v3") == 0)
    v = 3;
  else
    return error_file (img, EINVAL, "Unknown compatibility level %s",
                       compat);
  if (img->readonly)
    return error_file (img, EROFS, "cannot amend an image opened "
                       "read-only");
  if (img->drv->set_version == NULL)
    return error_file (img, ENOTSUP, "format %s has no compat level",
                       img->drv->name);
  return img->drv->set_version (img, v);
}
