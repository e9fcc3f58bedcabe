/* SPDX-License-Identifier: BSD-3-Clause */
/* Allocation status through the chain (image_extents, as qemu-img map
 * and NBD base:allocation see it), whether a backing range reads as
 * zeros, and prefetching (image_cache). */
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

/* ---- extents through the chain ----------------------------------------- */

/* The first caller finds out, once (host_is_dense: on tmpfs the block
 * count, one fstat; else a SEEK_HOLE, which on tmpfs walks every page,
 * ~10 ms per GiB).  The first allocating writes of a fresh overlay all
 * ask about its base at once - each of 16 workers walking a 4 GiB base
 * took a fifth of a short write run's CPU (bench W2f).  Meanwhile the
 * others answer "may have holes", which costs them a quick SEEK_DATA per
 * question, no walk.  A punch in between stores 0, and the finder's
 * answer then does not land: never a stale 1 after a punch returned. */
bool
host_dense (struct image *img)
{
  int d = __atomic_load_n (&img->host_dense, __ATOMIC_RELAXED);

  if (d == -1 &&
      __atomic_compare_exchange_n (&img->host_dense, &d, -2, false,
                                   __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    d = img->fd < 0 ||
      host_is_dense (img->fd, img->data_start, img->host_in_memory);
    __atomic_compare_exchange_n (&img->host_dense, &(int) { -2 }, d, false,
                                 __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    d = __atomic_load_n (&img->host_dense, __ATOMIC_RELAXED);
  }
  return d == 1;
}

/* Fills *e with the status of the run at offset in img (depth d of the
 * chain), following unallocated ranges down the chain.  quick: see
 * struct drv_status. */
static int
chain_status (struct image *img, uint64_t offset, uint64_t count,
              unsigned d, bool quick, struct image_extent *e)
{
  struct drv_status st = { .host_offset = -1, .quick = quick };

  if (img->drv->block_status (img, offset, count, &st) == -1)
    return -1;
  assert (st.length > 0 && st.length <= count);

  e->offset = offset;
  e->length = st.length;
  e->depth = d;
  e->host_offset = st.host_offset;
  e->filename = img->filename;

  switch (st.kind) {
  case DRV_DATA:
    e->flags = IMAGE_EXTENT_DATA | IMAGE_EXTENT_PRESENT;
    if (st.compressed)
      e->flags |= IMAGE_EXTENT_COMPRESSED;
    else if (img->drv->refine_host_holes && !st.host_checked &&
             st.host_offset >= 0 && !host_dense (img)) {
      /* A cluster over a hole of the host file reads as zeros: say so,
       * and split the run where the host file changes. */
      bool is_data;
      uint64_t len;
      if (source_data_status (img->src, (uint64_t) st.host_offset, st.length,
                            quick, &is_data, &len) == -1)
        return error_syscall (img, "SEEK_DATA");
      e->length = len;
      if (!is_data)
        e->flags |= IMAGE_EXTENT_ZERO;
    }
    return 0;

  case DRV_ZERO:
    e->flags = IMAGE_EXTENT_ZERO | IMAGE_EXTENT_PRESENT;
    return 0;

  case DRV_UNALLOCATED:
    if (img->backing && offset < img->backing->size)
      return chain_status (img->backing, offset,
                           MIN (st.length, img->backing->size - offset),
                           d + 1, quick, e);
    /* No backing image, or past its end: zeros, reported at this depth. */
    e->flags = IMAGE_EXTENT_ZERO;
    e->host_offset = -1;
    if (img->backing)
      e->length = st.length;
    return 0;
  }
  abort ();
}

int
image_extents (struct image *img, uint64_t count, uint64_t offset,
               unsigned flags, image_extent_fn fn, void *opaque)
{
  if (request_in_range (img, count, offset, EINVAL, "block status") == -1)
    return -1;
  while (count > 0) {
    struct image_extent e;
    int r;

    if (chain_status (img, offset, count, 0, false, &e) == -1)
      return -1;
    r = fn (opaque, &e);
    if (r != 0)
      return r;
    if (flags & IMAGE_EXTENTS_ONE)
      break;
    offset += e.length;
    count -= e.length;
  }
  return 0;
}

bool
chain_backing_is_zero (struct image *img, uint64_t offset, uint64_t count)
{
  struct image *b = img->backing;

  while (count > 0) {
    struct image_extent e;

    if (b == NULL || offset >= b->size)
      return true;
    if (chain_status (b, offset, MIN (count, b->size - offset), 1, true,
                      &e) == -1)
      return false;
    if (!(e.flags & IMAGE_EXTENT_ZERO))
      return false;
    offset += e.length;
    count -= e.length;
  }
  return true;
}

int
image_cache (struct image *img, uint64_t count, uint64_t offset)
{
  struct image_extent e;

  if (request_in_range (img, count, offset, EINVAL, "cache") == -1)
    return -1;
  /* Ask the kernel to read ahead each host range the chain maps. */
  while (count > 0) {
    if (chain_status (img, offset, count, 0, false, &e) == -1)
      return -1;
    if (e.host_offset >= 0 && !(e.flags & IMAGE_EXTENT_ZERO)) {
      struct image *owner = img;
      unsigned i;
      for (i = 0; i < e.depth; i++)
        owner = owner->backing;
      if (owner->fd >= 0)       /* a remote owner has no page cache */
        posix_fadvise (owner->fd, e.host_offset, (off_t) e.length,
                       POSIX_FADV_WILLNEED);
    }
    offset += e.length;
    count -= e.length;
  }
  return 0;
}

