/* SPDX-License-Identifier: BSD-3-Clause */
/* Concurrent writers on one shared QED image over a backing file:
 *
 *  - same clusters: every thread writes its own 512-byte slice of the same
 *    unallocated clusters at once.  Allocation of a cluster must be
 *    serialised: a lost slice, or a slice overwritten by another thread's
 *    copy on write, shows up as a wrong byte.
 *  - different clusters: each thread allocates its own clusters (these may
 *    proceed in parallel) and reads them back while others write.
 *
 * Every byte is checked against a model, again after close and reopen,
 * and qemu-img check must be clean.  Several rounds on fresh overlays
 * give the races a chance to happen.
 */
#include <config.h>

#include <pthread.h>

#include "engine-test.h"

#define CS (64ULL << 10)
#define NTHREADS 8
#define SLICE 512
#define SHARED_CLUSTERS 32      /* clusters every thread writes into */
#define OWN_CLUSTERS 4          /* clusters each thread has to itself */
#define SIZE ((SHARED_CLUSTERS + NTHREADS * OWN_CLUSTERS) * CS)
#define ROUNDS 10

static uint8_t model[SIZE];
static struct image *img;
static pthread_barrier_t start;

static void *
writer (void *arg)
{
  unsigned t = (unsigned) (uintptr_t) arg;
  uint8_t buf[SLICE], check[CS];
  uint64_t k, own = (SHARED_CLUSTERS + t * OWN_CLUSTERS) * CS;

  pthread_barrier_wait (&start);
  for (k = 0; k < SHARED_CLUSTERS; k++) {
    uint64_t off = k * CS + t * SLICE;
    fill_pattern (buf, SLICE, off, 10 + t);
    CHECK (image_pwrite (img, buf, SLICE, off, 0));
  }
  for (k = 0; k < OWN_CLUSTERS; k++) {
    /* A partial write (copy on write at both ends), then a check. */
    uint64_t off = own + k * CS + 100 * (t + 1);
    uint64_t len = CS / 2;
    uint8_t *w = malloc (len);
    fill_pattern (w, len, off, 20 + t);
    CHECK (image_pwrite (img, w, len, off, 0));
    CHECK (image_pread (img, check, CS, own + k * CS));
    if (memcmp (check + (off - own - k * CS), w, len) != 0)
      die ("thread %u: own cluster %" PRIu64 " reads back wrong", t, k);
    free (w);
  }
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
    uint64_t own = (SHARED_CLUSTERS + t * OWN_CLUSTERS) * CS;
    for (k = 0; k < SHARED_CLUSTERS; k++)
      fill_pattern (model + k * CS + t * SLICE, SLICE, k * CS + t * SLICE,
                    10 + t);
    for (k = 0; k < OWN_CLUSTERS; k++) {
      uint64_t off = own + k * CS + 100 * (t + 1);
      fill_pattern (model + off, CS / 2, off, 20 + t);
    }
  }
}

int
main (int argc, char *argv[])
{
  static uint8_t base[SIZE];
  pthread_t th[NTHREADS];
  unsigned round, t;
  FILE *fp;

  test_init (argv[0]);
  fill_pattern (base, SIZE, 0, 1);
  fp = fopen (path ("base.raw"), "w");
  if (fp == NULL || fwrite (base, 1, SIZE, fp) != SIZE || fclose (fp) != 0)
    die ("writing base.raw");

  for (round = 0; round < ROUNDS; round++) {
    memcpy (model, base, SIZE);
    create_image (path ("ov.qed"), "qed", SIZE, "base.raw", CS, 0);
    img = open_image (path ("ov.qed"), 0, 0);
    pthread_barrier_init (&start, NULL, NTHREADS);
    for (t = 0; t < NTHREADS; t++)
      if (pthread_create (&th[t], NULL, writer, (void *) (uintptr_t) t) != 0)
        die ("pthread_create");
    for (t = 0; t < NTHREADS; t++)
      pthread_join (th[t], NULL);
    pthread_barrier_destroy (&start);
    apply_model ();
    verify_image (img, model, SIZE, "after concurrent writes");
    CHECK (image_close (img));

    img = open_image (path ("ov.qed"), IMAGE_OPEN_READONLY, 0);
    verify_image (img, model, SIZE, "after reopen");
    CHECK (image_close (img));
    qemu_img_check_clean (path ("ov.qed"));
  }

  test_cleanup ();
  printf ("engine threads: ok (%d rounds)\n", ROUNDS);
  return 0;
}
