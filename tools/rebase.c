/* SPDX-License-Identifier: BSD-3-Clause */
/* cowbd-img rebase [-q] [-p] [-u] [-f FMT] -b BACKING [-F BACKING_FMT] FILE
 *
 * Gives FILE a new backing file (-b "": none).
 *
 * Unsafe mode (-u) only rewrites the header (image_set_backing), with FILE
 * opened without its chain: for a backing file that was moved or renamed.
 *
 * Safe mode keeps what FILE reads.  For every range FILE does not allocate
 * itself (it reads from the old chain, or zeros), the old content is
 * compared with the new backing file's, ZERO_BLOCK by ZERO_BLOCK, and each
 * run of differing blocks is written into FILE with the old content (as
 * zeroes where that is all zeros).  Ranges both chains call zero are not
 * read at all.  Then FILE is flushed and its header names the new backing
 * file.  Interrupted (Ctrl-C) before that, FILE has gained some clusters
 * holding the old content and still names the old backing file: it reads
 * exactly as before.
 *
 * BACKING is stored as given and, like every backing name, resolved from
 * FILE's directory.  Without -F its probed format is stored (see
 * create.c for why).
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "img.h"
#include "minmax.h"

#define BUF_SIZE (4u << 20)

struct rebase {
  struct image *img;            /* FILE, with its old chain */
  struct image *new_backing;    /* NULL: none */
  uint64_t size, new_size;
  char *old_buf, *new_buf;
  struct progress *progress;
};

/* Reads the new backing file's content at [offset, offset + n): zeros
 * past its end or when there is none. */
static int
read_new (struct rebase *rb, uint64_t offset, size_t n)
{
  size_t have = 0;

  if (rb->new_backing && offset < rb->new_size) {
    have = (size_t) MIN ((uint64_t) n, rb->new_size - offset);
    if (image_pread (rb->new_backing, rb->new_buf, have, offset) == -1)
      return -1;
  }
  memset (rb->new_buf + have, 0, n - have);
  return 0;
}

/* Writes the old content of [offset + start, offset + end) into FILE. */
static int
write_old (struct rebase *rb, uint64_t offset, size_t start, size_t end)
{
  return write_runs (rb->img, rb->old_buf + start, end - start,
                     offset + start, true);
}

/* Makes FILE hold, at [offset, offset + n), the old content wherever the
 * new backing file reads differently. */
static int
rebase_chunk (struct rebase *rb, uint64_t offset, size_t n)
{
  size_t i = 0;

  if (image_pread (rb->img, rb->old_buf, n, offset) == -1 ||
      read_new (rb, offset, n) == -1)
    return -1;
  while (i < n) {
    size_t start, len = MIN ((size_t) ZERO_BLOCK, n - i);
    bool same = memcmp (rb->old_buf + i, rb->new_buf + i, len) == 0;

    for (start = i, i += len; i < n; i += len) {
      len = MIN ((size_t) ZERO_BLOCK, n - i);
      if ((memcmp (rb->old_buf + i, rb->new_buf + i, len) == 0) != same)
        break;
    }
    if (!same && write_old (rb, offset, start, i) == -1)
      return -1;
  }
  return 0;
}

/* Is [offset, ...) known to read zeros in the new backing file?  Sets *n
 * to the length of that answer. */
static int
new_is_zero (struct rebase *rb, uint64_t offset, uint64_t *n, bool *zero)
{
  struct image_extent e;

  if (rb->new_backing == NULL || offset >= rb->new_size) {
    *zero = true;
    return 0;
  }
  if (extent_at (rb->new_backing, offset, rb->new_size, &e) == -1)
    return -1;
  *zero = e.flags & IMAGE_EXTENT_ZERO;
  *n = MIN (*n, e.length);
  return 0;
}

/* Handles the range at offset; sets *n to how far it got. */
static int
rebase_step (struct rebase *rb, uint64_t offset, uint64_t *n)
{
  struct image_extent e;
  bool new_zero;

  if (extent_at (rb->img, offset, rb->size, &e) == -1)
    return -1;
  *n = e.length;
  if (e.depth == 0 && (e.flags & IMAGE_EXTENT_PRESENT))
    return 0;                   /* FILE's own: unchanged */
  if (new_is_zero (rb, offset, n, &new_zero) == -1)
    return -1;
  if (new_zero && (e.flags & IMAGE_EXTENT_ZERO))
    return 0;
  *n = MIN (*n, (uint64_t) BUF_SIZE);
  return rebase_chunk (rb, offset, (size_t) *n);
}

static int
copy_differences (struct rebase *rb)
{
  uint64_t offset, n;

  for (offset = 0; offset < rb->size && !interrupted (); offset += n) {
    if (rebase_step (rb, offset, &n) == -1) {
      error_image ();
      return -1;
    }
    progress_update (rb->progress, offset + n, rb->size);
  }
  progress_end (rb->progress);
  if (interrupted ())
    return 0;
  if (image_flush (rb->img) == -1) {
    error_image ();
    return -1;
  }
  return 0;
}

/* Refuses a new backing chain that holds FILE itself (a loop). */
static int
check_loop (struct image *img, struct image *chain, const char *backing)
{
  for (; chain; chain = image_backing (chain))
    if (image_same_file (image_name (chain), image_name (img))) {
      error_msg ("%s: rebasing onto %s would make a backing chain loop",
                 image_name (img), backing);
      return -1;
    }
  return 0;
}

/* Opens the new backing chain read-only, refusing a loop.  A chain that
 * holds FILE conflicts with FILE's own lock (FILE is open for writing):
 * that refusal is looked at again without locks, to name the loop. */
static struct image *
open_new_backing (struct image *img, const char *path, const char *bfmt,
                  const char *backing)
{
  struct image_open_opts oo = { .format = bfmt,
                                .flags = IMAGE_OPEN_READONLY,
                                .remote_timeout_ms = img_remote_timeout_ms };
  struct image *chain = image_open (path, &oo);
  CLEANUP_FREE char *busy = NULL;

  if (chain == NULL && image_errno () == EBUSY) {
    busy = xstrdup (image_error ());
    oo.flags |= IMAGE_OPEN_FORCE_SHARE;
    chain = image_open (path, &oo);
  }
  if (chain == NULL) {
    error_msg ("%s: new backing file: %s", image_name (img),
               busy ? busy : image_error ());
    return NULL;
  }
  if (check_loop (img, chain, backing) == -1) {
    image_close (chain);
    return NULL;
  }
  if (busy) {
    error_msg ("%s: new backing file: %s", image_name (img), busy);
    image_close (chain);
    return NULL;
  }
  return chain;
}

/* Safe mode: copies, then rewrites the header. */
static int
rebase_safe (struct image *img, const char *backing, const char *bfmt,
             bool show_progress)
{
  struct rebase rb = { .img = img, .size = image_size (img) };
  CLEANUP_FREE char *path = NULL;
  int r = -1;

  if (backing) {
    path = resolve_backing (image_name (img), backing);
    rb.new_backing = open_new_backing (img, path, bfmt, backing);
    if (rb.new_backing == NULL)
      return -1;
    rb.new_size = image_size (rb.new_backing);
    if (bfmt == NULL) {
      struct image_info info;
      image_get_info (rb.new_backing, &info);
      bfmt = info.format;
    }
  }
  rb.old_buf = malloc (BUF_SIZE);
  rb.new_buf = malloc (BUF_SIZE);
  if (rb.old_buf == NULL || rb.new_buf == NULL)
    error_msg ("out of memory");
  else {
    interrupt_install ();
    rb.progress = progress_new (show_progress);
    r = copy_differences (&rb);
    progress_free (rb.progress);
  }
  if (r == 0 && !interrupted () &&
      image_set_backing (img, backing, bfmt) == -1) {
    error_image ();
    r = -1;
  }
  free (rb.old_buf);
  free (rb.new_buf);
  if (rb.new_backing)
    image_close (rb.new_backing);
  return r;
}

/* Unsafe mode: the header only. */
static int
rebase_unsafe (struct image *img, const char *backing, const char *bfmt)
{
  CLEANUP_FREE char *path = NULL;

  if (backing) {
    path = resolve_backing (image_name (img), backing);
    if (image_same_file (path, image_name (img))) {
      error_msg ("%s: an image cannot be its own backing file",
                 image_name (img));
      return -1;
    }
  }
  if (backing && bfmt == NULL) {
    if (access (path, F_OK) == 0 && (bfmt = image_probe (path)) == NULL) {
      error_image ();
      return -1;
    }
  }
  if (image_set_backing (img, backing, bfmt) == -1) {
    error_image ();
    return -1;
  }
  return 0;
}

int
cmd_rebase (int argc, char **argv)
{
  static const struct option long_opts[] = {
    { "help", no_argument, NULL, OPT_HELP },
    { NULL },
  };
  const char *format = NULL, *backing = NULL, *bfmt = NULL, *filename;
  bool quiet = false, show_progress = false, unsafe = false;
  struct image *img;
  int c, r;

  while ((c = getopt_long (argc, argv, "qpuf:b:F:", long_opts, NULL))
         != -1) {
    switch (c) {
    case OPT_HELP: usage_command (stdout, "rebase"); return 0;
    case 'q': quiet = true; break;
    case 'p': show_progress = true; break;
    case 'u': unsafe = true; break;
    case 'f': format = optarg; break;
    case 'b': backing = optarg; break;
    case 'F': bfmt = optarg; break;
    default: return usage_hint ("rebase", 1);
    }
  }
  if (argc - optind != 1)
    return usage_error ("rebase", 1, "expecting one image file name");
  if (backing == NULL)
    return usage_error ("rebase", 1, "-b BACKING is required "
                        "(-b \"\" removes the backing file)");
  filename = argv[optind];
  if (backing[0] == '\0') {
    backing = NULL;
    bfmt = NULL;
  }

  img = open_image (filename, format, unsafe ? IMAGE_OPEN_NO_BACKING : 0);
  if (img == NULL)
    return 1;
  if (unsafe)
    r = rebase_unsafe (img, backing, bfmt);
  else
    r = rebase_safe (img, backing, bfmt, show_progress && !quiet);
  if (close_image (img) == -1)
    r = -1;
  if (interrupted ())
    interrupt_exit (filename);
  return r == 0 ? 0 : 1;
}
