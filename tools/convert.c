/* SPDX-License-Identifier: BSD-3-Clause */
/* cowbd-img convert [-q] [-p] [-n] [-c] [-f FMT] [-O OUTPUT_FMT] [-o OPTIONS]
 *                   [-m THREADS] SRC DST
 *
 * Copies what SRC reads (through its backing chain) into DST, a new image
 * of the same virtual size, never writing zeros:
 *
 *   - a range SRC's extents call zero (hole, zero cluster, unallocated
 *     over nothing) is skipped: DST is created fresh and already reads
 *     zeros there, so holes stay holes;
 *   - a data range is read in chunks of CHUNK_SIZE, and each run of
 *     all-zero ZERO_BLOCK blocks inside it is skipped too; only the runs
 *     between them are written.
 *
 * With -c every non-zero cluster of DST is written compressed (qcow2
 * only): chunks are whole clusters, see convert-compress.c.
 *
 * With -n DST already exists and may hold anything: the zero ranges and
 * blocks are then written with image_zero (may trim) instead of skipped.
 *
 * Work is shared by THREADS workers (the engine is thread-safe).  One
 * cursor, under `lock`, hands out the next data chunk; a worker reads it
 * into its own buffer (allocated once: first touches of fresh memory are
 * slow here, see DESIGN.md) and writes its non-zero runs.  Reads run in
 * parallel; writes take `write_lock` in turn: buffered writes to one host
 * file serialise on its inode lock in the kernel anyway, and two writers
 * waiting there spin (perf showed a quarter of the time in
 * rwsem_spin_on_owner on tmpfs), while one writer lets the other worker
 * read.  The first error stops every worker; its message is kept, since
 * the engine's messages are per thread.  On error or Ctrl-C a DST we
 * created is removed.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "img.h"
#include "minmax.h"

#define CHUNK_SIZE (4u << 20)   /* bytes one worker reads at a time */
#define MAX_THREADS 16
#define DEFAULT_THREADS 2

struct convert {
  struct image *src, *dst;
  uint64_t size;
  bool fill_zeros;              /* -n: DST may not read zeros */
  bool compress;                /* -c */
  uint64_t cluster;             /* -c: DST's cluster size */
  struct progress *progress;

  pthread_mutex_t write_lock;   /* held while a worker writes to dst */
  pthread_mutex_t lock;
  /* Called with lock held: */
  uint64_t cursor;              /* first offset not yet handed out */
  uint64_t done;                /* bytes finished, for progress */
  bool failed;                  /* a worker failed: stop */
  char *error;                  /* its message */
};

/* A range handed to a worker. */
struct chunk {
  uint64_t offset, length;
  bool zero;                    /* reads as zeros in SRC */
};

/* Records the calling thread's engine error, if it is the first. */
static void
convert_fail (struct convert *cv)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&cv->lock);
  if (!cv->failed) {
    cv->failed = true;
    cv->error = xstrdup (image_error ());
  }
}

/* Hands out the next chunk.  Called with cv->lock held.  Zero ranges are
 * skipped here (counted done) unless they must be written. */
static int
next_chunk (struct convert *cv, struct chunk *ch)
{
  struct image_extent e;

  while (cv->cursor < cv->size && !cv->failed && !interrupted ()) {
    if (extent_at (cv->src, cv->cursor, cv->size, &e) == -1) {
      cv->failed = true;
      cv->error = xstrdup (image_error ());
      return 0;
    }
    ch->offset = cv->cursor;
    ch->zero = e.flags & IMAGE_EXTENT_ZERO;
    if (cv->compress)
      compress_align (cv->cluster, cv->size, ch->offset, &e.length,
                      &ch->zero);
    if (ch->zero && !cv->fill_zeros) {
      cv->cursor += e.length;
      cv->done += e.length;
      continue;
    }
    ch->length = ch->zero ? e.length : MIN (e.length, (uint64_t) CHUNK_SIZE);
    cv->cursor += ch->length;
    return 1;
  }
  return 0;
}

static int
copy_chunk (struct convert *cv, const struct chunk *ch, char *buf)
{
  if (ch->zero)
    return image_zero (cv->dst, ch->length, ch->offset, IMAGE_MAY_TRIM);
  if (image_pread (cv->src, buf, ch->length, ch->offset) == -1)
    return -1;
  if (cv->compress)
    return compress_chunk (cv->dst, buf, ch->offset, ch->length,
                           cv->cluster, cv->fill_zeros);
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&cv->write_lock);
  return write_runs (cv->dst, buf, ch->length, ch->offset, cv->fill_zeros);
}

static void *
worker (void *opaque)
{
  struct convert *cv = opaque;
  struct chunk ch;
  char *buf = malloc (CHUNK_SIZE);

  if (buf == NULL) {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&cv->lock);
    if (!cv->failed) {
      cv->failed = true;
      cv->error = xstrdup ("out of memory for the copy buffer");
    }
    return NULL;
  }
  for (;;) {
    uint64_t done;
    int more;

    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&cv->lock);
      more = next_chunk (cv, &ch);
      done = cv->done;
    }
    progress_update (cv->progress, done, cv->size);
    if (!more)
      break;
    if (copy_chunk (cv, &ch, buf) == -1) {
      convert_fail (cv);
      break;
    }
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&cv->lock);
    cv->done += ch.length;
  }
  free (buf);
  return NULL;
}

/* Runs nthreads workers (the calling thread is one of them). */
static int
run_workers (struct convert *cv, unsigned nthreads)
{
  pthread_t tids[MAX_THREADS];
  unsigned i, started = 0;
  int e;

  for (i = 1; i < nthreads; i++) {
    e = pthread_create (&tids[started], NULL, worker, cv);
    if (e != 0) {
      fprintf (stderr, "cowbd-img: warning: starting a copy thread: %s\n",
               strerror (e));
      break;
    }
    started++;
  }
  worker (cv);
  for (i = 0; i < started; i++)
    pthread_join (tids[i], NULL);
  if (cv->failed) {
    error_msg ("%s", cv->error);
    return -1;
  }
  progress_update (cv->progress, cv->size, cv->size);
  return 0;
}

/* Creates (unless -n) and opens DST.  *created tells whether DST is
 * ours to remove on failure (a failed image_create removed it already, and
 * left an existing file alone when it refused the options). */
static struct image *
open_target (const char *dst, uint64_t size, bool create,
             struct image_create_opts *opts, bool *created)
{
  struct image *img;

  *created = false;
  if (create) {
    opts->size = size;
    if (image_create (dst, opts) == -1) {
      error_image ();
      return NULL;
    }
    *created = true;
  }
  img = open_image (dst, opts->format, create ? IMAGE_OPEN_NO_BACKING : 0);
  if (img && image_size (img) < size) {
    error_msg ("%s: the target (%" PRIu64 " bytes) is smaller than the "
               "source (%" PRIu64 " bytes)", dst, image_size (img), size);
    image_close (img);
    return NULL;
  }
  return img;
}

static int
convert (struct convert *cv, const char *dst, bool create,
         struct image_create_opts *opts, unsigned nthreads)
{
  bool created;
  int r;

  interrupt_install ();
  cv->dst = open_target (dst, cv->size, create, opts, &created);
  if (cv->dst && cv->compress &&
      compress_cluster_size (cv->dst, &cv->cluster) == -1) {
    image_close (cv->dst);
    cv->dst = NULL;
  }
  if (cv->dst == NULL) {
    if (created)
      unlink (dst);
    return 1;
  }
  r = run_workers (cv, nthreads);
  progress_end (cv->progress);
  if (close_image (cv->dst) == -1)
    r = -1;
  if ((r == -1 || interrupted ()) && created)
    unlink (dst);
  if (interrupted ())
    interrupt_exit (dst);
  return r == -1 ? 1 : 0;
}

/* Refuses a DST that is SRC or one of its backing files: creating it
 * would destroy what is being copied. */
static int
check_target (struct image *src, const char *dst)
{
  struct image *img;

  for (img = src; img; img = image_backing (img))
    if (image_same_file (image_name (img), dst)) {
      error_msg ("%s: the target is %s, which the copy reads", dst,
                 img == src ? "the source" : "in the source's backing chain");
      return -1;
    }
  return 0;
}

static int
parse_threads (const char *arg, unsigned *n)
{
  char *end;
  long v;

  errno = 0;
  v = strtol (arg, &end, 10);
  if (errno || *end || end == arg || v < 1 || v > MAX_THREADS) {
    error_msg ("-m must be a number of threads from 1 to %d, not '%s'",
               MAX_THREADS, arg);
    return -1;
  }
  *n = (unsigned) v;
  return 0;
}

int
cmd_convert (int argc, char **argv)
{
  static const struct option long_opts[] = {
    { "help", no_argument, NULL, OPT_HELP },
    { "force-share", no_argument, NULL, 'U' },
    { NULL },
  };
  struct image_create_opts opts = { .lazy_refcounts = -1, .format = "raw" };
  struct convert cv = { .lock = PTHREAD_MUTEX_INITIALIZER,
                        .write_lock = PTHREAD_MUTEX_INITIALIZER };
  const char *src_format = NULL;
  bool quiet = false, show_progress = false, create = true;
  unsigned nthreads = DEFAULT_THREADS, share = 0;
  int c, status;

  while ((c = getopt_long (argc, argv, "qpncf:O:o:m:U", long_opts, NULL))
         != -1) {
    switch (c) {
    case OPT_HELP: usage_command (stdout, "convert"); return 0;
    case 'U': share = IMAGE_OPEN_FORCE_SHARE; break;
    case 'q': quiet = true; break;
    case 'p': show_progress = true; break;
    case 'n': create = false; break;
    case 'c': cv.compress = true; break;
    case 'f': src_format = optarg; break;
    case 'O': opts.format = optarg; break;
    case 'o':
      if (strcmp (optarg, "help") == 0 || strcmp (optarg, "?") == 0) {
        print_create_options (stdout);
        return 0;
      }
      if (parse_create_options (optarg, &opts) == -1)
        return usage_hint ("convert", 1);
      break;
    case 'm':
      if (parse_threads (optarg, &nthreads) == -1)
        return usage_hint ("convert", 1);
      break;
    default: return usage_hint ("convert", 1);
    }
  }
  if (argc - optind != 2)
    return usage_error ("convert", 1, "expecting SRC and DST");
  if (opts.backing_file || opts.size)
    return usage_error ("convert", 1, "-o backing_file and size are not "
                        "supported by convert");

  if (cv.compress && create && strcmp (opts.format, "qcow2") != 0) {
    error_msg ("-O %s: compression is not supported for this image "
               "format", opts.format);
    return 1;
  }
  cv.src = open_image (argv[optind], src_format,
                       IMAGE_OPEN_READONLY | share);
  if (cv.src == NULL)
    return 1;
  if (check_target (cv.src, argv[optind + 1]) == -1) {
    image_close (cv.src);
    return 1;
  }
  cv.size = image_size (cv.src);
  cv.fill_zeros = !create;
  cv.progress = progress_new (show_progress && !quiet);
  status = convert (&cv, argv[optind + 1], create, &opts, nthreads);
  progress_free (cv.progress);
  image_close (cv.src);
  free (cv.error);
  return status;
}
