/* SPDX-License-Identifier: BSD-3-Clause */
/* Where convert writes: an engine image (a file cowbd-img created or,
 * with -n, one that exists), or an NBD export named by a URI
 * (nbd://host[:port]/export, nbd+unix:///export?socket=PATH, ...) that
 * is written through libnbd as a raw device.  The engine opens URIs only
 * read-only (remote backing images), so the writable URI lives here.
 *
 * A target is used by several copy threads at once: the engine is
 * thread-safe, and so is a libnbd handle (its calls take the handle's
 * lock).  Errors are reported as the engine's are: -1, with the message
 * in image_error () (image_set_error), naming the target.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_LIBNBD
#include "libnbd-load.h"
#endif

#include "img.h"

struct target {
  struct image *img;            /* an engine image, or NULL */
#ifdef HAVE_LIBNBD
  struct nbd_handle *nbd;       /* else an NBD export */
#endif
  const char *name;
  uint64_t size;
};

bool
target_is_uri (const char *name)
{
  return image_name_is_uri (name);
}

struct target *
target_from_image (struct image *img, const char *name)
{
  struct target *t = calloc (1, sizeof *t);

  if (t == NULL) {
    perror ("cowbd-img: calloc");
    exit (1);
  }
  t->img = img;
  t->name = name;
  t->size = image_size (img);
  return t;
}

struct image *
target_image (struct target *t)
{
  return t->img;
}

uint64_t
target_size (struct target *t)
{
  return t->size;
}

#ifdef HAVE_LIBNBD

/* Sets the engine's error from libnbd's, naming the target. */
static void
nbd_fail (struct target *t, const char *what)
{
  int e = nbdlib.nbd_get_errno ();

  image_set_error (e ? e : EIO, "%s: %s: %s", t->name, what,
                   nbdlib.nbd_get_error ());
}

static int
nbd_target_connect (struct target *t, const char *uri)
{
  int64_t size;

  if (libnbd_load (uri, "NBD targets") == -1)
    return -1;
  t->nbd = nbdlib.nbd_create ();
  if (t->nbd == NULL) {
    image_set_error (ENOMEM, "%s: %s", uri, nbdlib.nbd_get_error ());
    return -1;
  }
  if (nbdlib.nbd_connect_uri (t->nbd, uri) == -1) {
    nbd_fail (t, "connecting");
    return -1;
  }
  if (nbdlib.nbd_is_read_only (t->nbd) == 1) {
    image_set_error (EROFS, "%s: the export is read-only", uri);
    return -1;
  }
  size = nbdlib.nbd_get_size (t->nbd);
  if (size == -1) {
    nbd_fail (t, "size");
    return -1;
  }
  t->size = (uint64_t) size;
  return 0;
}

struct target *
target_open_uri (const char *uri)
{
  struct target *t = calloc (1, sizeof *t);

  if (t == NULL) {
    perror ("cowbd-img: calloc");
    exit (1);
  }
  t->name = uri;
  if (nbd_target_connect (t, uri) == -1) {
    error_image ();
    if (t->nbd)
      nbdlib.nbd_close (t->nbd);
    free (t);
    return NULL;
  }
  return t;
}

int
target_pwrite (struct target *t, const void *buf, size_t count,
               uint64_t offset)
{
  if (t->img)
    return image_pwrite (t->img, buf, count, offset, 0);
  if (nbdlib.nbd_pwrite (t->nbd, buf, count, offset, 0) == -1) {
    nbd_fail (t, "write");
    return -1;
  }
  return 0;
}

/* For a server without NBD_CMD_WRITE_ZEROES: zeros written as data. */
static int
nbd_target_write_zeros (struct target *t, uint64_t count, uint64_t offset)
{
  static const char zeros[1 << 16];

  while (count > 0) {
    size_t n = count < sizeof zeros ? (size_t) count : sizeof zeros;

    if (nbdlib.nbd_pwrite (t->nbd, zeros, n, offset, 0) == -1) {
      nbd_fail (t, "write");
      return -1;
    }
    count -= n;
    offset += n;
  }
  return 0;
}

/* NBD_CMD_WRITE_ZEROES is bounded like any request: large ranges go in
 * pieces (the export's maximum, or 1 GiB when it names none). */
static int
nbd_target_zero (struct target *t, uint64_t count, uint64_t offset,
                 unsigned flags)
{
  uint32_t nbd_flags = (flags & IMAGE_MAY_TRIM) ? 0 : LIBNBD_CMD_FLAG_NO_HOLE;
  int64_t max = nbdlib.nbd_get_block_size (t->nbd, LIBNBD_SIZE_MAXIMUM);
  uint64_t piece = max > 0 ? (uint64_t) max : UINT64_C (1) << 30;

  if (nbdlib.nbd_can_zero (t->nbd) != 1)
    return nbd_target_write_zeros (t, count, offset);
  if (piece > UINT64_C (1) << 30)
    piece = UINT64_C (1) << 30;
  while (count > 0) {
    uint64_t n = count < piece ? count : piece;

    if (nbdlib.nbd_zero (t->nbd, n, offset, nbd_flags) == -1) {
      nbd_fail (t, "write zeroes");
      return -1;
    }
    count -= n;
    offset += n;
  }
  return 0;
}

int
target_zero (struct target *t, uint64_t count, uint64_t offset,
             unsigned flags)
{
  if (t->img)
    return image_zero (t->img, count, offset, flags);
  return nbd_target_zero (t, count, offset, flags);
}

int
target_close (struct target *t)
{
  int r = 0;

  if (t->img)
    r = close_image (t->img);
  else {
    if (nbdlib.nbd_flush (t->nbd, 0) == -1 ||
        nbdlib.nbd_shutdown (t->nbd, 0) == -1) {
      nbd_fail (t, "flush");
      error_image ();
      r = -1;
    }
    nbdlib.nbd_close (t->nbd);
  }
  free (t);
  return r;
}

#else /* !HAVE_LIBNBD */

struct target *
target_open_uri (const char *uri)
{
  error_msg ("%s: NBD URIs need libnbd, which this build lacks", uri);
  return NULL;
}

int
target_pwrite (struct target *t, const void *buf, size_t count,
               uint64_t offset)
{
  return image_pwrite (t->img, buf, count, offset, 0);
}

int
target_zero (struct target *t, uint64_t count, uint64_t offset,
             unsigned flags)
{
  return image_zero (t->img, count, offset, flags);
}

int
target_close (struct target *t)
{
  int r = close_image (t->img);

  free (t);
  return r;
}

#endif /* !HAVE_LIBNBD */
