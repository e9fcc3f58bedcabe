/* SPDX-License-Identifier: BSD-3-Clause */
/* Concurrent writers on one shared image over a backing file, built once
 * per format (test-engine-threads-qed, -qcow2, -raw); rounds alternate
 * between the rows of the format's table (QED with 4 KiB and 64 KiB
 * clusters, qcow2 with lazy refcounts on and off):
 *
 *  - same clusters: every thread writes its own 512-byte slice of the same
 *    unallocated clusters at once.  Allocation of a cluster must be
 *    serialised: a lost slice, or a slice overwritten by another thread's
 *    copy on write, shows up as a wrong byte.
 *  - different clusters: each thread allocates clusters in a region of
 *    its own (with small clusters, an L2 table of its own, so that new
 *    L2 tables are created concurrently) and reads each whole cluster back
 *    while others write: its own bytes, and the backing data around them.
 *  - meanwhile a thread flushes in a loop, so that writebacks run during
 *    allocations and table creation.
 *
 * Every byte is checked against a model, again after close and reopen,
 * and qemu-img check must be clean.  Several rounds on fresh overlays give
 * the races a chance to happen.  (raw has no backing file and allocates
 * nothing: there the threads write a plain file side by side.)
 */
#include <config.h>

#include <pthread.h>

#include "engine-test.h"

#define NTHREADS 8
#define SLICE 512
#define SHARED_CLUSTERS 32      /* clusters every thread writes into */
#define OWN_CLUSTERS 16         /* clusters in each thread's own region */
#define ROUNDS 10

static const struct fmt_case cases[] = {
  { .format = "qed", .cs = 4096, .qed_tables = 2, .lazy = -1 },
  { .format = "qed", .cs = 64 << 10, .lazy = -1 },
  { .format = "qcow2", .cs = 4096, .lazy = 1 },
  { .format = "qcow2", .cs = 4096, .lazy = 0 },
  { .format = "raw", .cs = 4096, .lazy = -1 },
};

static uint64_t cs, span, size;
static uint8_t *model, *base;
static struct image *img;
static pthread_barrier_t start;
static volatile int writers_left;

/* Each thread's region: an L2 table of its own where a table maps at most
 * 4 MiB, else just room for its clusters.  Region 0 holds the shared
 * clusters. */
static void
set_geometry (const struct fmt_case *c)
{
  cs = fmt_cluster_size (c);
  span = fmt_l2_coverage (c);
  if (span > (4 << 20))
    span = OWN_CLUSTERS * 3 * cs;
  size = (NTHREADS + 1) * span;
  assert (SHARED_CLUSTERS * cs <= span);
}

static uint64_t
own_offset (unsigned t, uint64_t k)
{
  return (t + 1) * span + k * 3 * cs + 100 * (t + 1);
}

/* The cluster holding off reads as the backing data with buf over it. */
static void
check_cluster (unsigned t, uint64_t off, const uint8_t *buf, uint64_t len)
{
  uint64_t first = off / cs * cs;
  uint8_t *got = malloc (cs);

  CHECK (image_pread (img, got, cs, first));
  if (memcmp (got + (off - first), buf, len) != 0)
    die ("thread %u: own cluster at %" PRIu64 " reads back wrong", t, first);
  if (memcmp (got, base + first, off - first) != 0 ||
      memcmp (got + (off - first) + len, base + off + len,
              first + cs - off - len) != 0)
    die ("thread %u: backing data around the write at %" PRIu64
         " reads back wrong", t, off);
  free (got);
}

static void *
writer (void *arg)
{
  unsigned t = (unsigned) (uintptr_t) arg;
  uint8_t buf[SLICE];
  uint64_t k;

  pthread_barrier_wait (&start);
  for (k = 0; k < SHARED_CLUSTERS; k++) {
    uint64_t off = k * cs + t * SLICE;
    fill_pattern (buf, SLICE, off, 10 + t);
    CHECK (image_pwrite (img, buf, SLICE, off, 0));
  }
  for (k = 0; k < OWN_CLUSTERS; k++) {
    /* A partial write (copy on write at both ends), then a check. */
    uint64_t off = own_offset (t, k), len = cs / 2;
    uint8_t *w = malloc (len);
    fill_pattern (w, len, off, 20 + t);
    CHECK (image_pwrite (img, w, len, off, 0));
    check_cluster (t, off, w, len);
    free (w);
  }
  __atomic_sub_fetch (&writers_left, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

static void *
flusher (void *arg)
{
  pthread_barrier_wait (&start);
  while (__atomic_load_n (&writers_left, __ATOMIC_SEQ_CST) > 0)
    CHECK (image_flush (img));
  return NULL;
}

/* What the threads wrote, applied to the model in any order (the ranges
 * do not overlap). */
static void
apply_model (void)
{
  unsigned t;
  uint64_t k;

  for (t = 0; t < NTHREADS; t++) {
    for (k = 0; k < SHARED_CLUSTERS; k++)
      fill_pattern (model + k * cs + t * SLICE, SLICE, k * cs + t * SLICE,
                    10 + t);
    for (k = 0; k < OWN_CLUSTERS; k++)
      fill_pattern (model + own_offset (t, k), cs / 2, own_offset (t, k),
                    20 + t);
  }
}

static void
run_threads (void)
{
  pthread_t th[NTHREADS + 1];
  unsigned t;

  writers_left = NTHREADS;
  pthread_barrier_init (&start, NULL, NTHREADS + 1);
  for (t = 0; t < NTHREADS; t++)
    th[t] = spawn_thread (writer, (void *) (uintptr_t) t);
  th[NTHREADS] = spawn_thread (flusher, NULL);
  for (t = 0; t <= NTHREADS; t++)
    pthread_join (th[t], NULL);
  pthread_barrier_destroy (&start);
}

/* One round on a fresh image made as c says. */
static void
run_round (const struct fmt_case *c)
{
  const char *ov = path ("ov.img");

  set_geometry (c);
  model = malloc (size);
  base = malloc (size);
  if (model == NULL || base == NULL)
    die ("out of memory");
  if (fmt_is ("raw"))
    memset (base, 0, size);
  else {
    fill_pattern (base, size, 0, 1);
    write_file (path ("base.raw"), base, size);
  }
  memcpy (model, base, size);
  create_fmt (ov, size, "base.raw", c);

  img = open_fmt (ov, 0, 0);
  run_threads ();
  apply_model ();
  fmt_close_verified (img, ov, model, size, "after concurrent writes");
  free (model);
  free (base);
}

int
main (int argc, char *argv[])
{
  const struct fmt_case *c, *mine[8];
  unsigned n = 0, round;

  test_init (argv[0]);
  FOR_EACH_FMT_CASE (c, cases)
    mine[n++] = c;
  assert (n > 0);
  for (round = 0; round < ROUNDS; round++)
    run_round (mine[round % n]);

  printf ("%d rounds\n", ROUNDS);
  return test_done ("threads");
}
