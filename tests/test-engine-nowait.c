/* SPDX-License-Identifier: BSD-3-Clause */
/* The non-blocking calls (image_pread_nowait, image_pwrite_nowait,
 * image_flush_nowait), used the way the server uses them: try, and on
 * EAGAIN do the same request with the blocking call.  Several threads on
 * one QED overlay over a raw backing file, each in its own region, mixing
 * both kinds of call; every read is checked against a model, and at the
 * end the image is checked whole, reopened, and given to qemu-img check.
 *
 * It runs twice: in the test's directory (a disk: only cached reads may
 * succeed without blocking) and on tmpfs when /dev/shm exists (the whole
 * chain in memory: allocating writes and flushes must succeed inline
 * too, and the test insists that some did).
 */
#include <config.h>

#include <pthread.h>

#include "engine-test.h"

#define CS (64ULL << 10)
#define NTHREADS 4
#define REGION (32 * CS)
#define SIZE (NTHREADS * REGION)
#define OPS 4000

static uint8_t model[SIZE];
static struct image *img;
static unsigned long inline_reads, inline_writes, inline_allocs,
  inline_flushes;

struct worker {
  unsigned t;
  uint64_t seed;
};

static int
is_allocated (void *opaque, const struct image_extent *e)
{
  *(bool *) opaque = (e->flags & IMAGE_EXTENT_PRESENT) && e->depth == 0;
  return 0;
}

static void *
worker (void *arg)
{
  struct worker *w = arg;
  uint64_t base = w->t * REGION, state = w->seed;
  static __thread uint8_t buf[2 * CS], back[2 * CS];
  unsigned i;

  for (i = 0; i < OPS; i++) {
    uint64_t len, off, kind;

    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    kind = (state >> 33) % 10;
    len = 1 + (state >> 20) % (2 * CS - 1);
    off = base + (state >> 40) % (REGION - len);

    if (kind < 5) {
      bool was_allocated = false;
      CHECK (image_extents (img, 1, off, IMAGE_EXTENTS_ONE, is_allocated,
                            &was_allocated));
      fill_pattern (buf, len, off, 1000 + w->t * OPS + i);
      memcpy (model + off, buf, len);  /* our region: no one else writes */
      if (image_pwrite_nowait (img, buf, len, off, 0) == 0) {
        __atomic_add_fetch (&inline_writes, 1, __ATOMIC_RELAXED);
        if (!was_allocated)
          __atomic_add_fetch (&inline_allocs, 1, __ATOMIC_RELAXED);
      }
      else if (image_errno () != EAGAIN)
        die ("pwrite_nowait: %s, not EAGAIN", strerror (image_errno ()));
      else
        CHECK (image_pwrite (img, buf, len, off, 0));
    }
    else if (kind < 9) {
      if (image_pread_nowait (img, back, len, off) == 0)
        __atomic_add_fetch (&inline_reads, 1, __ATOMIC_RELAXED);
      else if (image_errno () != EAGAIN)
        die ("pread_nowait: %s, not EAGAIN", strerror (image_errno ()));
      else
        CHECK (image_pread (img, back, len, off));
      if (memcmp (back, model + off, len) != 0)
        die ("thread %u op %u: read of %" PRIu64 " bytes at %" PRIu64
             " differs from the model", w->t, i, len, off);
    }
    else {
      if (image_flush_nowait (img) == 0)
        __atomic_add_fetch (&inline_flushes, 1, __ATOMIC_RELAXED);
      else if (image_errno () != EAGAIN)
        die ("flush_nowait: %s, not EAGAIN", strerror (image_errno ()));
      else
        CHECK (image_flush (img));
    }
  }
  return NULL;
}

static void
run_in (const char *dir, bool in_memory)
{
  static uint8_t base[SIZE];
  char b[2048], o[2048];
  pthread_t th[NTHREADS];
  struct worker w[NTHREADS];
  unsigned t;
  FILE *fp;

  snprintf (b, sizeof b, "%s/base.raw", dir);
  snprintf (o, sizeof o, "%s/ov.qed", dir);
  fill_pattern (base, SIZE, 0, 1);
  memcpy (model, base, SIZE);
  fp = fopen (b, "w");
  if (fp == NULL || fwrite (base, 1, SIZE, fp) != SIZE || fclose (fp) != 0)
    die ("writing %s", b);
  create_image (o, "qed", SIZE, "base.raw", 0, 0);
  inline_reads = inline_writes = inline_allocs = inline_flushes = 0;

  img = open_image (o, 0, 0);
  for (t = 0; t < NTHREADS; t++) {
    w[t] = (struct worker) { .t = t, .seed = rnd () };
    if (pthread_create (&th[t], NULL, worker, &w[t]) != 0)
      die ("pthread_create");
  }
  for (t = 0; t < NTHREADS; t++)
    pthread_join (th[t], NULL);
  verify_image (img, model, SIZE, "after the threads");
  CHECK (image_close (img));
  img = open_image (o, IMAGE_OPEN_READONLY, 0);
  verify_image (img, model, SIZE, "after reopen");
  CHECK (image_close (img));
  qemu_img_check_clean (o);

  printf ("%s: inline reads %lu, writes %lu (allocating %lu), flushes %lu\n",
          dir, inline_reads, inline_writes, inline_allocs, inline_flushes);
  if (in_memory && (inline_reads == 0 || inline_allocs == 0 ||
                    inline_flushes == 0))
    die ("on tmpfs, reads, allocating writes and flushes must all have "
         "run without blocking at least once");
}

int
main (int argc, char *argv[])
{
  char shm[256];

  test_init (argv[0]);
  rng_seed ();
  run_in (test_dir, false);

  snprintf (shm, sizeof shm, "/dev/shm/cowbd-test-nowait.%d", (int) getpid ());
  if (mkdir (shm, 0700) == 0) {
    run_in (shm, true);
    run ("rm -rf '%s'", shm);
  }
  else
    printf ("no /dev/shm: the in-memory case is not tested\n");

  test_cleanup ();
  printf ("engine nowait: ok\n");
  return 0;
}
