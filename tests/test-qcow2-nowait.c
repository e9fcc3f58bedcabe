/* SPDX-License-Identifier: BSD-3-Clause */
/* The non-blocking calls on qcow2, used the way the server uses them: try
 * image_pread_nowait / image_pwrite_nowait / image_flush_nowait, and on
 * EAGAIN do the same request with the blocking call.
 *
 *  1. Several threads on one qcow2 overlay (lazy refcounts on, then off)
 *     over a raw backing file, each in its own region, mixing both kinds
 *     of call; every read is checked against a model, and at the end the
 *     image is checked whole, reopened, and given to qemu-img check.  On
 *     tmpfs the whole chain is in memory: allocating writes and flushes
 *     must run inline too, and the test insists that some did.
 *  2. An image qemu made with compressed clusters and an internal
 *     snapshot: every call either succeeds with the right bytes or says
 *     EAGAIN (a compressed cluster, a shared L2 table), nothing else; the
 *     snapshot still reads as it was saved (qemu-img snapshot -a).
 *
 * Both run in the test's directory (a disk) and, when /dev/shm exists,
 * on tmpfs.
 */
#include <config.h>

#include <pthread.h>

#include "engine-test.h"

#define CS (64ULL << 10)
#define NTHREADS 4
#define REGION (64 * CS)
#define SIZE (NTHREADS * REGION)
#define OPS 3000

static uint8_t model[SIZE];
static struct image *img;
static unsigned long inline_reads, inline_writes, inline_flushes;

struct worker {
  unsigned t;
  uint64_t seed;
};

/* A write: inline if it can be, else blocking. */
static void
write_either (const uint8_t *buf, uint64_t len, uint64_t off)
{
  if (image_pwrite_nowait (img, buf, len, off, 0) == 0)
    __atomic_add_fetch (&inline_writes, 1, __ATOMIC_RELAXED);
  else if (image_errno () != EAGAIN)
    die ("pwrite_nowait: %s, not EAGAIN", strerror (image_errno ()));
  else
    CHECK (image_pwrite (img, buf, len, off, 0));
}

static void
read_either (uint8_t *buf, uint64_t len, uint64_t off)
{
  if (image_pread_nowait (img, buf, len, off) == 0)
    __atomic_add_fetch (&inline_reads, 1, __ATOMIC_RELAXED);
  else if (image_errno () != EAGAIN)
    die ("pread_nowait: %s, not EAGAIN", strerror (image_errno ()));
  else
    CHECK (image_pread (img, buf, len, off));
}

static void
flush_either (void)
{
  if (image_flush_nowait (img) == 0)
    __atomic_add_fetch (&inline_flushes, 1, __ATOMIC_RELAXED);
  else if (image_errno () != EAGAIN)
    die ("flush_nowait: %s, not EAGAIN", strerror (image_errno ()));
  else
    CHECK (image_flush (img));
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
      fill_pattern (buf, len, off, 1000 + w->t * OPS + i);
      memcpy (model + off, buf, len);   /* our region: no one else writes */
      write_either (buf, len, off);
    }
    else if (kind < 9) {
      read_either (back, len, off);
      if (memcmp (back, model + off, len) != 0)
        die ("thread %u op %u: read of %" PRIu64 " bytes at %" PRIu64
             " differs from the model", w->t, i, len, off);
    }
    else
      flush_either ();
  }
  return NULL;
}

static void
threads_in (const char *dir, bool in_memory, int lazy)
{
  static uint8_t base[SIZE];
  char b[2048], o[2048];
  pthread_t th[NTHREADS];
  struct worker w[NTHREADS];
  unsigned t;
  FILE *fp;

  snprintf (b, sizeof b, "%s/base.raw", dir);
  snprintf (o, sizeof o, "%s/ov.qcow2", dir);
  fill_pattern (base, SIZE, 0, 1);
  memcpy (model, base, SIZE);
  fp = fopen (b, "w");
  if (fp == NULL || fwrite (base, 1, SIZE, fp) != SIZE || fclose (fp) != 0)
    die ("writing %s", b);
  create_qcow2 (o, SIZE, "base.raw", 0, lazy, NULL, 0);
  inline_reads = inline_writes = inline_flushes = 0;

  img = open_image (o, 0, 0);
  /* The dirty bit is written by the first change, which waits for it:
   * one blocking write first, so that later ones may run inline. */
  fill_pattern (model, 512, 0, 7);
  CHECK (image_pwrite (img, model, 512, 0, 0));
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

  printf ("%s lazy=%d: inline reads %lu, writes %lu, flushes %lu\n", dir,
          lazy, inline_reads, inline_writes, inline_flushes);
  if (in_memory && (inline_reads == 0 || inline_writes == 0 ||
                    inline_flushes == 0))
    die ("on tmpfs, reads, writes and flushes must all have run without "
         "blocking at least once");
}

/* qemu's compressed image with a snapshot: nowait calls succeed with the
 * right bytes or say EAGAIN; the snapshot survives. */
static void
compressed_snapshot_in (const char *dir)
{
  static uint8_t buf[3 * CS];
  uint64_t off;

  if (run ("cd '%s' && rm -f c.raw c.qcow2 && qemu-img create -q -f raw "
           "c.raw 4M && qemu-io -f raw -c 'write -P 0x21 0 4M' c.raw "
           ">/dev/null && qemu-img convert -c -O qcow2 c.raw c.qcow2 && "
           "qemu-img snapshot -c s1 c.qcow2", dir) != 0)
    die ("making a compressed image with a snapshot");
  memset (model, 0x21, 4 << 20);
  snprintf ((char *) buf, sizeof buf, "%s/c.qcow2", dir);
  img = open_image ((char *) buf, 0, 0);
  for (off = 0; off < (4 << 20); off += 3 * CS) {
    uint64_t len = MIN ((uint64_t) sizeof buf, (4ULL << 20) - off);
    read_either (buf, len, off);
    if (memcmp (buf, model + off, len) != 0)
      die ("%s: compressed data read wrong at %" PRIu64, dir, off);
  }
  for (off = 100; off < (4 << 20); off += 5 * CS) {
    fill_pattern (buf, 1000, off, 3);
    memcpy (model + off, buf, 1000);
    write_either (buf, 1000, off);
  }
  flush_either ();
  verify_image (img, model, 4 << 20, "after writes into shared clusters");
  CHECK (image_close (img));
  if (run ("cd '%s' && qemu-img check -q c.qcow2 && "
           "qemu-img snapshot -a s1 c.qcow2 && "
           "qemu-img compare -q -F raw c.qcow2 c.raw", dir) != 0)
    die ("%s: the snapshot did not survive the writes", dir);
}

int
main (int argc, char *argv[])
{
  char shm[256];

  test_init (argv[0]);
  rng_seed ();
  threads_in (test_dir, false, 1);
  threads_in (test_dir, false, 0);
  compressed_snapshot_in (test_dir);

  snprintf (shm, sizeof shm, "/dev/shm/cowbd-test-qcow2-nowait.%d",
            (int) getpid ());
  if (mkdir (shm, 0700) == 0) {
    threads_in (shm, true, 1);
    threads_in (shm, true, 0);
    compressed_snapshot_in (shm);
    run ("rm -rf '%s'", shm);
  }
  else
    printf ("no /dev/shm: the in-memory case is not tested\n");

  test_cleanup ();
  printf ("qcow2 nowait: ok\n");
  return 0;
}
