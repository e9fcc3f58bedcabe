/* SPDX-License-Identifier: BSD-3-Clause */
/* cowbd-img commit [-q] [-p] [-d] [-f FMT] [-b BASE] FILE
 *
 * Writes the overlay's own data into its backing image, then (unless -d)
 * empties the overlay so that it reads everything from the backing image
 * again; what FILE reads never changes.  With -b, BASE is an image
 * deeper in the chain: what FILE reads from every image above BASE is
 * written into BASE, and nothing is emptied (-b implies -d, as for
 * qemu-img); the chain's links stay as they are.
 *
 * The overlay is opened with IMAGE_OPEN_BACKING_RW.  Its extents at depth
 * 0 that are PRESENT are its own allocations: data is copied to the
 * backing image (its all-zero blocks as zeroes, which may trim), zero
 * clusters become image_zero.  Nothing past the end of the backing image
 * needs copying when it reads zeros; data there is refused before anything
 * is written, as the engine cannot grow an image.
 *
 * Order: the backing image is flushed before the overlay is emptied, so
 * that a crash between the two loses nothing.  Ctrl-C stops between two
 * chunks; both images are then closed cleanly (the overlay still holds
 * all its data, so FILE reads as before).
 */
#include <config.h>

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "img.h"
#include "minmax.h"

#define BUF_SIZE (4u << 20)

/* The depth of the image committed into: 1, or with -b the depth of
 * BASE in the chain.  What lies above it is committed. */
static unsigned base_depth = 1;

/* True for a range an image above the base allocates. */
static bool
own_extent (const struct image_extent *e)
{
  return e->depth < base_depth && (e->flags & IMAGE_EXTENT_PRESENT);
}

/* Refuses an overlay with data past the end of its backing image. */
static int
check_fits (struct image *img, struct image *backing)
{
  uint64_t offset = image_size (backing), size = image_size (img);
  struct image_extent e;

  for (; offset < size; offset += e.length) {
    if (extent_at (img, offset, size, &e) == -1) {
      error_image ();
      return -1;
    }
    if (own_extent (&e) && !(e.flags & IMAGE_EXTENT_ZERO)) {
      error_msg ("%s: data at offset %" PRIu64 " lies past the end of "
                 "the backing file (%" PRIu64 " bytes), which cannot be "
                 "grown", image_name (img), offset,
                 image_size (backing));
      return -1;
    }
  }
  return 0;
}

/* Copies [offset, offset + len) of the overlay into the backing image. */
static int
commit_range (struct image *img, struct image *backing,
              const struct image_extent *e, uint64_t len, char *buf)
{
  uint64_t done;

  if (e->flags & IMAGE_EXTENT_ZERO)
    return image_zero (backing, len, e->offset, IMAGE_MAY_TRIM);
  for (done = 0; done < len && !interrupted (); ) {
    size_t n = (size_t) MIN (len - done, (uint64_t) BUF_SIZE);
    if (image_pread (img, buf, n, e->offset + done) == -1 ||
        write_runs (backing, buf, n, e->offset + done, true) == -1)
      return -1;
    done += n;
  }
  return 0;
}

static int
commit (struct image *img, struct image *backing, struct progress *p)
{
  uint64_t offset, end = MIN (image_size (img), image_size (backing));
  struct image_extent e;
  char *buf = malloc (BUF_SIZE);
  int r = 0;

  if (buf == NULL) {
    error_msg ("out of memory");
    return -1;
  }
  for (offset = 0; offset < end && !interrupted (); offset += e.length) {
    if (extent_at (img, offset, end, &e) == -1 ||
        (own_extent (&e) &&
         commit_range (img, backing, &e, e.length, buf) == -1)) {
      error_image ();
      r = -1;
      break;
    }
    progress_update (p, offset + e.length, end);
  }
  free (buf);
  if (r == 0 && image_flush (backing) == -1) {
    error_image ();
    r = -1;
  }
  return r;
}

/* The image at depth d of img's chain (opened), or NULL. */
static struct image *
chain_at (struct image *img, unsigned d)
{
  for (; img && d > 0; d--)
    img = image_backing (img);
  return img;
}

static int
commit_image (struct image *img, bool keep, bool quiet, bool show_progress)
{
  struct image *backing = chain_at (img, base_depth);
  struct progress *p;
  int r;

  if (backing == NULL) {
    error_msg ("%s: has no backing file to commit into",
               image_name (img));
    return -1;
  }
  if (check_fits (img, backing) == -1)
    return -1;
  interrupt_install ();
  p = progress_new (show_progress && !quiet);
  r = commit (img, backing, p);
  progress_free (p);
  if (r == 0 && !interrupted () && !keep && image_make_empty (img) == -1) {
    error_image ();
    r = -1;
  }
  return r;
}

/* Sets base_depth to where base lies in filename's chain (the chain
 * opened read-only to look).  -1 with the message printed. */
static int
find_base (const char *filename, const char *format, const char *base)
{
  struct image *img = open_image (filename, format, IMAGE_OPEN_READONLY);
  struct image *b;
  unsigned d;

  if (img == NULL)
    return -1;
  for (d = 1, b = image_backing (img); b; d++, b = image_backing (b))
    if (image_same_file (image_name (b), base))
      break;
  image_close (img);
  if (b == NULL) {
    error_msg ("Did not find '%s' in the backing chain of '%s'", base,
               filename);
    return -1;
  }
  base_depth = d;
  return 0;
}

/* Opens filename with the image at base_depth read-write. */
static struct image *
open_chain (const char *filename, const char *format)
{
  struct image_open_opts opts = {
    .format = format, .flags = IMAGE_OPEN_BACKING_RW,
    .backing_rw_depth = base_depth,
    .remote_timeout_ms = img_remote_timeout_ms,
  };
  struct image *img = image_open (filename, &opts);

  if (img == NULL)
    error_image ();
  return img;
}

int
cmd_commit (int argc, char **argv)
{
  static const struct option long_opts[] = {
    { "help", no_argument, NULL, OPT_HELP },
    { NULL },
  };
  const char *format = NULL, *filename, *base = NULL;
  bool quiet = false, show_progress = false, keep = false;
  struct image *img;
  int c, r;

  while ((c = getopt_long (argc, argv, "qpdf:b:", long_opts, NULL)) != -1) {
    switch (c) {
    case OPT_HELP: usage_command (stdout, "commit"); return 0;
    case 'q': quiet = true; break;
    case 'p': show_progress = true; break;
    case 'd': keep = true; break;
    case 'f': format = optarg; break;
    case 'b': base = optarg; keep = true; break;   /* -b implies -d */
    default: return usage_hint ("commit", 1);
    }
  }
  if (argc - optind != 1)
    return usage_error ("commit", 1, "expecting one image file name");
  filename = argv[optind];

  if (base && find_base (filename, format, base) == -1)
    return 1;
  img = open_chain (filename, format);
  if (img == NULL)
    return 1;
  r = commit_image (img, keep, quiet, show_progress);
  if (close_image (img) == -1)
    r = -1;
  if (interrupted ())
    interrupt_exit (filename);
  if (r == 0 && !quiet)
    printf ("Image committed.\n");
  return r == 0 ? 0 : 1;
}
