/* SPDX-License-Identifier: BSD-3-Clause */
/* Concurrent writers on one shared qcow2 image over a backing file, with
 * lazy refcounts on and off in alternate rounds:
 *
 *  - same clusters: every thread writes its own 512-byte slice of the same
 *    unallocated clusters at once.  Allocation of a cluster must be
 *    serialised: a lost slice, or a slice overwritten by another thread's
 *    copy on write, shows up as a wrong byte.
 *  - different clusters: each thread allocates clusters in an L2 table of
 *    its own (4 KiB clusters: a table maps 2 MiB), so that new L2 tables
 *    are created concurrently, and reads them back while others write.
 *  - meanwhile a thread flushes in a loop, so that writebacks run during
 *    allocations and table creation.
 *
 * Every byte is checked against a model, again after close and reopen,
 * and qemu-img check must be clean.  Several rounds on fresh overlays give
 * the races a chance to happen.
 */
#include <config.h>

#include <pthread.h>

#include "engine-test.h"

#define CS 4096ULL
#define L2COV (CS * CS / 8)
#define NTHREADS 8
#define SLICE 512
#define SHARED_CLUSTERS 32      /* clusters every thread writes into */
#define OWN_CLUSTERS 16         /* clusters in each thread's own table */
#define SIZE ((NTHREADS + 1) * L2COV)
#define ROUNDS 10

static uint8_t model[SIZE];
static struct image *img;
static pthread_barrier_t start;
static volatile int writers_left;

static uint64_t
own_offset (unsigned t, uint64_t k)
{
  return (t + 1) * L2COV + k * 3 * CS + 100 * (t + 1);
}

static void *
writer (void *arg)
{
  unsigned t = (unsigned) (uintptr_t) arg;
  uint8_t buf[SLICE], check[CS];
  uint64_t k;

  pthread_barrier_wait (&start);
  for (k = 0; k < SHARED_CLUSTERS; k++) {
    uint64_t off = k * CS + t * SLICE;
    fill_pattern (buf, SLICE, off, 10 + t);
    CHECK (image_pwrite (img, buf, SLICE, off, 0));
  }
  for (k = 0; k < OWN_CLUSTERS; k++) {
    /* A partial write (copy on write at both ends), then a check. */
    uint64_t off = own_offset (t, k), len = CS / 2;
    uint8_t *w = malloc (len);
    fill_pattern (w, len, off, 20 + t);
    CHECK (image_pwrite (img, w, len, off, 0));
    CHECK (image_pread (img, check, len, off));
    if (memcmp (check, w, len) != 0)
      die ("thread %u: own cluster %" PRIu64 " reads back wrong", t, k);
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
      fill_pattern (model + k * CS + t * SLICE, SLICE, k * CS + t * SLICE,
                    10 + t);
    for (k = 0; k < OWN_CLUSTERS; k++)
      fill_pattern (model + own_offset (t, k), CS / 2, own_offset (t, k),
                    20 + t);
  }
}

int
main (int argc, char *argv[])
{
  static uint8_t base[SIZE];
  pthread_t th[NTHREADS + 1];
  unsigned round, t;
  FILE *fp;

  test_init (argv[0]);
  fill_pattern (base, SIZE, 0, 1);
  fp = fopen (path ("base.raw"), "w");
  if (fp == NULL || fwrite (base, 1, SIZE, fp) != SIZE || fclose (fp) != 0)
    die ("writing base.raw");

  for (round = 0; round < ROUNDS; round++) {
    memcpy (model, base, SIZE);
    create_qcow2 (path ("ov.qcow2"), SIZE, "base.raw", CS, round % 2, NULL,
                  0);
    img = open_image (path ("ov.qcow2"), 0, 0);
    writers_left = NTHREADS;
    pthread_barrier_init (&start, NULL, NTHREADS + 1);
    for (t = 0; t < NTHREADS; t++)
      if (pthread_create (&th[t], NULL, writer, (void *) (uintptr_t) t) != 0)
        die ("pthread_create");
    if (pthread_create (&th[NTHREADS], NULL, flusher, NULL) != 0)
      die ("pthread_create");
    for (t = 0; t <= NTHREADS; t++)
      pthread_join (th[t], NULL);
    pthread_barrier_destroy (&start);
    apply_model ();
    verify_image (img, model, SIZE, "after concurrent writes");
    CHECK (image_close (img));

    img = open_image (path ("ov.qcow2"), IMAGE_OPEN_READONLY, 0);
    verify_image (img, model, SIZE, "after reopen");
    CHECK (image_close (img));
    qemu_img_check_clean (path ("ov.qcow2"));
  }

  test_cleanup ();
  printf ("qcow2 threads: ok (%d rounds)\n", ROUNDS);
  return 0;
}
