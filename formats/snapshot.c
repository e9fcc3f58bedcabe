/* SPDX-License-Identifier: BSD-3-Clause */
/* image_snapshots: the listing of internal snapshots, for the formats
 * that have them (qcow2-snapshot.c). */
#include <config.h>

#include "internal.h"

int
image_snapshots (struct image *img, image_snapshot_fn fn, void *opaque)
{
  if (img->drv->list_snapshots == NULL)
    return 0;
  return img->drv->list_snapshots (img, fn, opaque);
}
