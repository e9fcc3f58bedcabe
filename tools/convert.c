/* SPDX-License-Identifier: BSD-3-Clause */
/* cowbd-img convert [-q] [-p] [-n] [-W] [-c] [--target-is-zero] [-U]
 *                   [-f FMT] [-O OUTPUT_FMT] [-o OPTIONS]
 *                   [-B BACKING [-F BACKING_FMT]] [-S SPARSE_SIZE]
 *                   [-t CACHE] [-T SRC_CACHE] [-m NUM] SRC DST
 *
 * Copies what SRC reads (through its backing chain) into DST, a new image
 * of the same virtual size (or with -n an existing one; an NBD URI
 * target, written through libnbd, is an export that exists, with or
 * without -n, as for qemu-img), never writing zeros:
 *
 *   - a range SRC's extents call zero (hole, zero cluster, unallocated
 *     over nothing) is skipped: DST is created fresh and already reads
 *     zeros there, so holes stay holes;
 *   - a data range is read in chunks of CHUNK_SIZE, and each run of
 *     all-zero sectors inside it at least min_sparse long (-S, 4 KiB by
 *     default, as qemu-img) is skipped too; shorter runs are written with
 *     the data around them.  -S 0 writes everything, zeros included: the
 *     target is fully allocated.
 *
 * With -n (or an NBD target) DST already exists and may hold anything:
 * the zero ranges and runs are then written with target_zero (may trim)
 * instead of skipped,
 * unless --target-is-zero vouches that DST reads zeros.
 *
 * With -c every non-zero cluster of DST is written compressed (qcow2
 * only): chunks are whole clusters (see convert-compress.c), compressed
 * by the workers in parallel outside write_lock; the engine places the
 * compressed bytes.
 *
 * With -B BACKING DST is a new overlay over BACKING ("the base"), and
 * holds only what differs from what the base reads: each data chunk is
 * compared with the base granule by granule (DST's cluster size), and
 * only differing granules are written (zero granules as zero clusters);
 * in a range SRC reads as zeros, only where the base has data is DST
 * zeroed.  qemu-img instead copies everything SRC's top image allocates
 * (it assumes SRC's backing is BACKING); the content is the same, ours
 * allocates no more than qemu-img's and less where SRC holds data equal
 * to the base's.
 *
 * Work is shared by NUM workers (-m: qemu-img's coroutines, here threads
 * with a request each in flight; the engine is thread-safe).  One cursor,
 * under `lock`, hands out the next chunk with a sequence number; a worker
 * reads it into its own buffer (allocated once: first touches of fresh
 * memory are slow here, see DESIGN.md) and writes its non-zero runs.
 * Reads run in parallel; writes take `write_lock` in turn: buffered
 * writes to one host file serialise on its inode lock in the kernel
 * anyway, and two writers waiting there spin (perf showed a quarter of
 * the time in rwsem_spin_on_owner on tmpfs), while one writer lets the
 * other worker read.  Without -W, as with qemu-img, chunks are written in
 * order of their offsets: a worker waits (on `turn`) until the chunks
 * before its own are written.  With -W they are written as they come.
 *
 * Lock order: write_lock, then lock.  The first error stops every worker;
 * its message is kept, since the engine's messages are per thread.  On
 * error or Ctrl-C a DST we created is removed.
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
#include "iszero.h"
#include "minmax.h"
#include "rounding.h"

#define CHUNK_SIZE (4u << 20)   /* bytes one worker reads at a time */
#define MAX_THREADS 16
#define DEFAULT_THREADS 8    /* qemu-img's default -m */
#define SECTOR 512u             /* the grain of -S */
#define DEFAULT_MIN_SPARSE 4096u
#define MAX_MIN_SPARSE (16u << 20)
#define DEFAULT_GRANULE 65536u  /* -B: compare unit if DST names none */

/* The command line. */
struct convert_opts {
  const char *src, *dst, *src_format;
  struct image_create_opts create;  /* format (-O), -o, -B, -F */
  bool create_target;               /* not -n */
  bool target_is_zero;              /* --target-is-zero */
  bool out_of_order;                /* -W */
  bool compress;                    /* -c */
  uint64_t min_sparse;              /* -S */
  unsigned nthreads;                /* -m */
  unsigned share;                   /* -U: IMAGE_OPEN_FORCE_SHARE */
  bool quiet, progress;
};

struct convert {
  struct image *src;
  struct target *dst;
  struct image *base;           /* -B: what DST's backing reads, or NULL */
  uint64_t base_size;
  uint64_t granule;             /* -B: compare unit (DST's cluster size) */
  uint64_t size;
  uint64_t min_sparse;          /* 0: write everything */
  uint64_t align;               /* zero runs skipped are aligned to this */
  bool fill_zeros;              /* DST may not read zeros */
  bool in_order;                /* not -W */
  bool compress;                /* -c */
  uint64_t cluster;             /* -c: DST's cluster size */
  struct progress *progress;

  pthread_mutex_t write_lock;   /* held while a worker writes to dst */
  pthread_cond_t turn;          /* signalled under write_lock */
  /* Called with write_lock held: */
  uint64_t written_seq;         /* chunks written (in order) so far */

  pthread_mutex_t lock;
  /* Called with lock held: */
  uint64_t cursor;              /* first offset not yet handed out */
  uint64_t next_seq;            /* sequence number of the next chunk */
  uint64_t done;                /* bytes finished, for progress */
  bool failed;                  /* a worker failed: stop */
  char *error;                  /* its message */
};

/* A range handed to a worker. */
struct chunk {
  uint64_t offset, length;
  uint64_t seq;                 /* its place in the order of writes */
  bool zero;                    /* reads as zeros in SRC */
};

/* Records msg as the error, if it is the first, and wakes the workers
 * waiting for their turn. */
static void
convert_fail_msg (struct convert *cv, const char *msg)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&cv->write_lock);
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&cv->lock);
    if (!cv->failed) {
      cv->failed = true;
      cv->error = xstrdup (msg);
    }
  }
  pthread_cond_broadcast (&cv->turn);
}

/* Records the calling thread's engine error, if it is the first. */
static void
convert_fail (struct convert *cv)
{
  convert_fail_msg (cv, image_error ());
}

static bool
convert_failed (struct convert *cv)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&cv->lock);
  return cv->failed;
}

/* Hands out the next chunk.  Called with cv->lock held.  Zero ranges are
 * skipped here (counted done) unless they must be written: into a target
 * that may not read zeros, over a base, or with -S 0 (written as data). */
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
    ch->zero = (e.flags & IMAGE_EXTENT_ZERO) && cv->min_sparse > 0;
    if (cv->compress)
      compress_align (cv->cluster, cv->size, ch->offset, &e.length,
                      &ch->zero);
    if (ch->zero && !cv->fill_zeros && !cv->base) {
      cv->cursor += e.length;
      cv->done += e.length;
      continue;
    }
    ch->length = ch->zero ? e.length : MIN (e.length, (uint64_t) CHUNK_SIZE);
    ch->seq = cv->next_seq++;
    cv->cursor += ch->length;
    return 1;
  }
  return 0;
}

/* ---- writing a chunk -------------------------------------------------- */

/* The length of the run of all-zero sectors at the start of buf. */
static size_t
zero_run (const char *buf, size_t count)
{
  size_t n = 0;

  while (n < count) {
    size_t s = MIN ((size_t) SECTOR, count - n);

    if (!is_zero (buf + n, s))
      break;
    n += s;
  }
  return n;
}

/* The zero run [a, b) of a buffer of count bytes at offset, shrunk to
 * cv->align boundaries (except at the buffer's ends), as qemu-img does
 * so that a target cluster is never left half written: *pb <= *pa when
 * nothing of it remains. */
static void
align_run (struct convert *cv, uint64_t offset, size_t count,
           size_t *pa, size_t *pb)
{
  uint64_t a = offset + *pa, b = offset + *pb;

  if (*pa > 0)
    a = ROUND_UP (a, cv->align);
  if (*pb < count)
    b = ROUND_DOWN (b, cv->align);
  *pa = (size_t) (MIN (a, offset + count) - offset);
  *pb = (size_t) (MAX (b, offset) - offset);
}

/* Writes count bytes of buf at offset, leaving out (or with fill_zeros
 * zeroing) each run of zero sectors at least min_sparse long once
 * aligned (align_run); shorter runs are written with the data. */
static int
write_sparse (struct convert *cv, const char *buf, size_t count,
              uint64_t offset)
{
  size_t data = 0, i = 0;       /* data: start of the data not written */

  if (cv->min_sparse == 0)
    return target_pwrite (cv->dst, buf, count, offset);
  while (i < count) {
    size_t z = zero_run (buf + i, count - i), a = i, b = i + z;

    if (z == 0) {
      i += MIN ((size_t) SECTOR, count - i);
      continue;
    }
    align_run (cv, offset, count, &a, &b);
    if (b > a && b - a >= cv->min_sparse) {
      if (a > data &&
          target_pwrite (cv->dst, buf + data, a - data, offset + data) == -1)
        return -1;
      if (cv->fill_zeros &&
          target_zero (cv->dst, b - a, offset + a, IMAGE_MAY_TRIM) == -1)
        return -1;
      data = b;
    }
    i += z;
  }
  if (count > data)
    return target_pwrite (cv->dst, buf + data, count - data, offset + data);
  return 0;
}

/* -B: reads what the base holds at [offset, offset + count) into buf
 * (zeros past its end). */
static int
read_base (struct convert *cv, char *buf, size_t count, uint64_t offset)
{
  size_t n = offset < cv->base_size ? MIN (count, cv->base_size - offset) : 0;

  memset (buf + n, 0, count - n);
  return n ? image_pread (cv->base, buf, n, offset) : 0;
}

/* -B: writes the granules of buf that differ from base (what the base
 * reads there); an all-zero granule becomes a zero write (a zero cluster
 * over the base's data). */
static int
write_differences (struct convert *cv, const char *buf, const char *base,
                   size_t count, uint64_t offset)
{
  size_t i = 0;

  while (i < count) {
    uint64_t at = offset + i;
    size_t n = MIN (count - i, (size_t) (cv->granule - at % cv->granule));
    int r = 0;

    if (memcmp (buf + i, base + i, n) != 0)
      r = is_zero (buf + i, n) ? target_zero (cv->dst, n, at, 0)
        : target_pwrite (cv->dst, buf + i, n, at);
    if (r == -1)
      return -1;
    i += n;
  }
  return 0;
}

/* -B: a range SRC reads as zeros is zeroed where the base has data. */
static int
zero_over_base (struct convert *cv, uint64_t offset, uint64_t count)
{
  uint64_t end = MIN (offset + count, cv->base_size);
  struct image_extent e;

  while (offset < end) {
    if (extent_at (cv->base, offset, end, &e) == -1)
      return -1;
    if (!(e.flags & IMAGE_EXTENT_ZERO) &&
        target_zero (cv->dst, e.length, offset, 0) == -1)
      return -1;
    offset += e.length;
  }
  return 0;
}

/* Writes a chunk whose data (unless it is a zero chunk) is in buf, and
 * with -B the base's in base.  Called with write_lock held. */
static int
write_chunk (struct convert *cv, const struct chunk *ch, const char *buf,
             const char *base)
{
  if (ch->zero && cv->base)
    return zero_over_base (cv, ch->offset, ch->length);
  if (ch->zero)
    return target_zero (cv->dst, ch->length, ch->offset, IMAGE_MAY_TRIM);
  if (cv->base)
    return write_differences (cv, buf, base, ch->length, ch->offset);
  return write_sparse (cv, buf, ch->length, ch->offset);
}

/* Waits until the chunks before ch are written (unless -W); returns
 * false if the copy failed meanwhile.  Called with write_lock held. */
static bool
wait_turn (struct convert *cv, const struct chunk *ch)
{
  while (cv->in_order && cv->written_seq != ch->seq) {
    if (convert_failed (cv))
      return false;
    pthread_cond_wait (&cv->turn, &cv->write_lock);
  }
  return !convert_failed (cv);
}

static int
copy_chunk (struct convert *cv, const struct chunk *ch, char *buf,
            char *base)
{
  bool compressed = cv->compress && !ch->zero;
  int r = 0;

  if (!ch->zero && image_pread (cv->src, buf, ch->length, ch->offset) == -1)
    return -1;
  if (!ch->zero && cv->base &&
      read_base (cv, base, ch->length, ch->offset) == -1)
    return -1;
  if (compressed &&
      compress_chunk (target_image (cv->dst), buf, ch->offset, ch->length,
                      cv->cluster, cv->fill_zeros) == -1)
    return -1;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&cv->write_lock);
  if (wait_turn (cv, ch) && !compressed)
    r = write_chunk (cv, ch, buf, base);
  cv->written_seq++;
  pthread_cond_broadcast (&cv->turn);
  return r;
}

static void
worker_loop (struct convert *cv, char *buf, char *base)
{
  struct chunk ch;

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
    if (copy_chunk (cv, &ch, buf, base) == -1) {
      convert_fail (cv);
      break;
    }
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&cv->lock);
    cv->done += ch.length;
  }
}

static void *
worker (void *opaque)
{
  struct convert *cv = opaque;
  char *buf = malloc (CHUNK_SIZE);
  char *base = cv->base ? malloc (CHUNK_SIZE) : NULL;

  if (buf == NULL || (cv->base && base == NULL))
    convert_fail_msg (cv, "out of memory for the copy buffer");
  else
    worker_loop (cv, buf, base);
  free (buf);
  free (base);
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

/* ---- the target ------------------------------------------------------- */

/* Opens an existing DST (-n) or the one just created. */
static struct target *
open_target_image (const struct convert_opts *o, bool created)
{
  unsigned flags = created && !o->create.backing_file
                   ? IMAGE_OPEN_NO_BACKING : 0;
  struct image *img = open_image (o->dst, o->create.format, flags);

  return img ? target_from_image (img, o->dst) : NULL;
}

/* Creates (unless -n) and opens DST.  *created tells whether DST is
 * ours to remove on failure (a failed image_create removed it already, and
 * left an existing file alone when it refused the options). */
static struct target *
open_target (struct convert_opts *o, uint64_t size, bool *created)
{
  struct target *t;

  *created = false;
  if (target_is_uri (o->dst))
    return target_open_uri (o->dst);
  if (o->create_target) {
    o->create.size = size;
    if (image_create (o->dst, &o->create) == -1) {
      error_image ();
      return NULL;
    }
    *created = true;
  }
  t = open_target_image (o, *created);
  if (t && target_size (t) < size) {
    error_msg ("%s: the target (%" PRIu64 " bytes) is smaller than the "
               "source (%" PRIu64 " bytes)", o->dst, target_size (t), size);
    target_close (t);
    return NULL;
  }
  return t;
}

/* The largest power of two not above v (v > 0). */
static uint64_t
pow2_floor (uint64_t v)
{
  return UINT64_C (1) << log_2_bits (v);
}

/* Sets the units that depend on DST: the alignment of the zero runs left
 * out (qemu-img's: the larger of -S and DST's cluster size, a power of
 * two), and with -B the base (what DST's backing reads) and the granule
 * compared with it (DST's cluster size). */
static void
setup_target (struct convert *cv, const struct convert_opts *o)
{
  struct image *img = target_image (cv->dst);
  struct image_info info = { .cluster_size = 0 };

  if (img)
    image_get_info (img, &info);
  cv->granule = info.cluster_size ? info.cluster_size : DEFAULT_GRANULE;
  cv->align = cv->min_sparse ? pow2_floor (cv->min_sparse) : SECTOR;
  if (info.cluster_size > cv->align && is_power_of_2 (info.cluster_size))
    cv->align = info.cluster_size;
  if (o->create.backing_file && img && image_backing (img)) {
    cv->base = image_backing (img);
    cv->base_size = image_size (cv->base);
  }
}

/* --target-is-zero cannot vouch for an overlay: it reads its backing. */
static int
check_target_is_zero (struct convert *cv, const struct convert_opts *o)
{
  struct image *img = target_image (cv->dst);

  if (o->target_is_zero && img && image_backing (img)) {
    error_msg ("Cannot use --target-is-zero when the destination image "
               "has a backing file");
    return -1;
  }
  return 0;
}

static int
convert (struct convert *cv, struct convert_opts *o)
{
  bool created;
  int r = -1;

  interrupt_install ();
  cv->dst = open_target (o, cv->size, &created);
  if (cv->dst && cv->compress &&
      compress_cluster_size (target_image (cv->dst), &cv->cluster) == -1) {
    target_close (cv->dst);
    cv->dst = NULL;
  }
  if (cv->dst == NULL) {
    if (created)
      unlink (o->dst);
    return 1;
  }
  setup_target (cv, o);
  if (check_target_is_zero (cv, o) == 0)
    r = run_workers (cv, o->nthreads);
  progress_end (cv->progress);
  if (target_close (cv->dst) == -1)
    r = -1;
  if ((r == -1 || interrupted ()) && created)
    unlink (o->dst);
  if (interrupted ())
    interrupt_exit (o->dst);
  return r == -1 ? 1 : 0;
}

/* Refuses a DST that is SRC or one of its backing files: creating it
 * would destroy what is being copied. */
static int
check_target (struct image *src, const char *dst)
{
  struct image *img;

  if (target_is_uri (dst))
    return 0;
  for (img = src; img; img = image_backing (img))
    if (image_same_file (image_name (img), dst)) {
      error_msg ("%s: the target is %s, which the copy reads", dst,
                 img == src ? "the source" : "in the source's backing chain");
      return -1;
    }
  return 0;
}

/* ---- the command line ------------------------------------------------- */

static int
parse_threads (const char *arg, unsigned *n)
{
  char *end;
  long v;

  errno = 0;
  v = strtol (arg, &end, 10);
  if (errno || *end || end == arg || v < 1 || v > MAX_THREADS) {
    error_msg ("Invalid number of coroutines. Allowed number of coroutines "
               "is between 1 and %d", MAX_THREADS);
    return -1;
  }
  *n = (unsigned) v;
  return 0;
}

static int
parse_sparse (const char *arg, uint64_t *min_sparse)
{
  if (parse_size ("-S", arg, min_sparse) == -1)
    return -1;
  if (*min_sparse % SECTOR || *min_sparse > MAX_MIN_SPARSE) {
    error_msg ("Invalid buffer size for sparse output specified. Valid "
               "sizes are multiples of %u up to %u. Select 0 to disable "
               "sparse detection (fully allocates output).",
               SECTOR, MAX_MIN_SPARSE);
    return -1;
  }
  return 0;
}

/* -t and -T: qemu's cache modes.  Accepted and checked; cowbd-img always
 * writes through the page cache and flushes DST before it exits. */
static int
parse_cache (const char *arg, const char *what)
{
  static const char *const modes[] = {
    "writeback", "writethrough", "none", "off", "directsync", "unsafe",
  };
  size_t i;

  for (i = 0; i < sizeof modes / sizeof modes[0]; i++)
    if (strcmp (arg, modes[i]) == 0)
      return 0;
  error_msg ("Invalid %scache option: %s", what, arg);
  return -1;
}

enum { OPT_TARGET_IS_ZERO = 0x200 };   /* above img.h's OPT_* */

/* Parses one option into o; returns -1 for a bad value (message
 * printed), -2 for an unknown option (getopt said which), 1 when the
 * command is done (-o help). */
static int
parse_option (int c, struct convert_opts *o)
{
  switch (c) {
  case 'U': o->share = IMAGE_OPEN_FORCE_SHARE; return 0;
  case 'q': o->quiet = true; return 0;
  case 'p': o->progress = true; return 0;
  case 'n': o->create_target = false; return 0;
  case 'W': o->out_of_order = true; return 0;
  case 'c': o->compress = true; return 0;
  case OPT_TARGET_IS_ZERO: o->target_is_zero = true; return 0;
  case 'f': o->src_format = optarg; return 0;
  case 'O': o->create.format = optarg; return 0;
  case 'B': o->create.backing_file = optarg; return 0;
  case 'F': o->create.backing_format = optarg; return 0;
  case 'S': return parse_sparse (optarg, &o->min_sparse);
  case 't': return parse_cache (optarg, "");
  case 'T': return parse_cache (optarg, "source ");
  case 'm': return parse_threads (optarg, &o->nthreads);
  case 'o':
    if (strcmp (optarg, "help") == 0 || strcmp (optarg, "?") == 0) {
      print_create_options (stdout);
      return 1;
    }
    return parse_create_options (optarg, &o->create);
  default: return -2;
  }
}

/* Refuses (one line) the combinations qemu-img refuses, with its
 * messages. */
static int
check_options (const struct convert_opts *o)
{
  const struct image_create_opts *c = &o->create;
  const char *why = NULL;

  if (c->size)
    why = "-o size is not supported by convert (the target takes the "
      "source's size)";
  else if (o->target_is_zero && o->create_target)
    why = "--target-is-zero requires use of -n flag";
  else if (c->backing_format && !c->backing_file)
    why = "Backing format cannot be used without backing file";
  else if (target_is_uri (o->dst) && strcmp (c->format, "raw") != 0)
    why = "an NBD URI target is written as raw: use -O raw";
  else if (!o->create_target)
    return 0;
  else if (o->compress && strcmp (c->format, "qcow2") != 0)
    why = "compression is not supported for this image format";
  else if (c->backing_file && strcmp (c->format, "raw") == 0)
    why = "Backing file not supported for file format 'raw'";
  else if (c->backing_file && !c->backing_format)
    why = "Use of backing file requires explicit backing format";
  if (why == NULL)
    return 0;
  error_msg ("%s", why);
  return -1;
}

static int
parse_args (int argc, char **argv, struct convert_opts *o)
{
  static const struct option long_opts[] = {
    { "help", no_argument, NULL, OPT_HELP },
    { "force-share", no_argument, NULL, 'U' },
    { "target-is-zero", no_argument, NULL, OPT_TARGET_IS_ZERO },
    { NULL },
  };
  int c, r;

  while ((c = getopt_long (argc, argv, "qpnWcUf:O:o:B:F:S:t:T:m:", long_opts,
                           NULL)) != -1) {
    if (c == OPT_HELP) {
      usage_command (stdout, "convert");
      return 1;
    }
    r = parse_option (c, o);
    if (r == -2)
      return usage_hint ("convert", -1);
    if (r != 0)
      return r;
  }
  if (argc - optind != 2)
    return usage_error ("convert", -1, "expecting SRC and DST");
  o->src = argv[optind];
  o->dst = argv[optind + 1];
  return check_options (o);
}

int
cmd_convert (int argc, char **argv)
{
  struct convert_opts o = {
    .create = { .format = "raw" },
    .create_target = true, .min_sparse = DEFAULT_MIN_SPARSE,
    .nthreads = DEFAULT_THREADS,
  };
  struct convert cv = { .lock = PTHREAD_MUTEX_INITIALIZER,
                        .write_lock = PTHREAD_MUTEX_INITIALIZER,
                        .turn = PTHREAD_COND_INITIALIZER };
  int r, status;

  r = parse_args (argc, argv, &o);
  if (r != 0)
    return r == 1 ? 0 : 1;
  cv.src = open_image (o.src, o.src_format, IMAGE_OPEN_READONLY | o.share);
  if (cv.src == NULL)
    return 1;
  if (check_target (cv.src, o.dst) == -1) {
    image_close (cv.src);
    return 1;
  }
  cv.size = image_size (cv.src);
  cv.min_sparse = o.min_sparse;
  /* An export is never created, only opened (as qemu-img does when it
   * cannot create one), and may hold anything. */
  cv.fill_zeros = (!o.create_target || target_is_uri (o.dst))
                  && !o.target_is_zero;
  cv.in_order = !o.out_of_order;
  cv.compress = o.compress;
  cv.progress = progress_new (o.progress && !o.quiet);
  status = convert (&cv, &o);
  progress_free (cv.progress);
  image_close (cv.src);
  free (cv.error);
  return status;
}
