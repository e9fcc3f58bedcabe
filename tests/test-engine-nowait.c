/* SPDX-License-Identifier: BSD-3-Clause */
/* The non-blocking calls, used the way the server uses them: try
 * image_pread_nowait / image_pwrite_nowait / image_flush_nowait, and on
 * EAGAIN do the same request with the blocking call.  Built once per
 * format (test-engine-nowait-qed, -qcow2, -raw).
 *
 *  1. Several threads on one overlay (qcow2 with lazy refcounts on, then
 *     off) over a raw backing file (raw: a plain file), each in its own
 *     region, mixing both kinds of call; every read is checked against a
 *     model, and at the end the image is checked whole, reopened, and
 *     given to qemu-img check.  On tmpfs the whole chain is in memory:
 *     reads, writes, allocating writes (where the format allocates) and
 *     flushes must run inline too, and the test insists that some did.
 *  2. qcow2 only: an image qemu made with compressed clusters and an
 *     internal snapshot: every call either succeeds with the right bytes
 *     or says EAGAIN (a compressed cluster, a shared L2 table), nothing
 *     else; the snapshot still reads as it was saved (qemu-img snapshot
 *     -a).
 *
 * Both run in the test's directory (a disk: there only cached reads need
 * succeed without blocking) and, when /dev/shm exists, on tmpfs.
 */
#include <config.h>

#include <pthread.h>

#include "engine-test.h"

#define CS (64ULL << 10)
#define NTHREADS 4
#define REGION (64 * CS)
#define SIZE (NTHREADS * REGION)
#define OPS 4000

static const struct fmt_case cases[] = {
  { .format = "qed", .lazy = -1 },
  { .format = "qcow2", .lazy = 1 },
  { .format = "qcow2", .lazy = 0 },
  { .format = "raw", .lazy = -1 },
};

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

/* A write: inline if it can be, else blocking.  Counts the inline writes
 * that had to allocate. */
static void
write_either (const uint8_t *buf, uint64_t len, uint64_t off)
{
  bool was_allocated = false;

  CHECK (image_extents (img, 1, off, IMAGE_EXTENTS_ONE, is_allocated,
                        &was_allocated));
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

static void
start_threads (void)
{
  pthread_t th[NTHREADS];
  struct worker w[NTHREADS];
  unsigned t;

  for (t = 0; t < NTHREADS; t++) {
    w[t] = (struct worker) { .t = t, .seed = rnd () };
    th[t] = spawn_thread (worker, &w[t]);
  }
  for (t = 0; t < NTHREADS; t++)
    pthread_join (th[t], NULL);
}

/* On tmpfs every kind of call must have run inline at least once;
 * allocating writes too, where the format allocates. */
static void
expect_inline (bool in_memory)
{
  if (in_memory && (inline_reads == 0 || inline_writes == 0 ||
                    inline_flushes == 0 ||
                    (!fmt_is ("raw") && inline_allocs == 0)))
    die ("on tmpfs, reads, writes, allocating writes and flushes must all "
         "have run without blocking at least once");
}

static void
threads_in (const char *dir, bool in_memory, const struct fmt_case *c)
{
  static uint8_t base[SIZE];
  char b[2048], o[2048];

  snprintf (b, sizeof b, "%s/base.raw", dir);
  snprintf (o, sizeof o, "%s/ov.img", dir);
  if (fmt_is ("raw"))
    memset (base, 0, SIZE);
  else {
    fill_pattern (base, SIZE, 0, 1);
    write_file (b, base, SIZE);
  }
  memcpy (model, base, SIZE);
  create_fmt (o, SIZE, "base.raw", c);
  inline_reads = inline_writes = inline_allocs = inline_flushes = 0;

  img = open_fmt (o, 0, 0);
  /* The dirty bit (QED: need-check) is written by the first change,
   * which waits for it: one blocking write first, so that later ones may
   * run inline. */
  fill_pattern (model, 512, 0, 7);
  CHECK (image_pwrite (img, model, 512, 0, 0));
  start_threads ();
  fmt_close_verified (img, o, model, SIZE, "after the threads");

  printf ("%s lazy=%d: inline reads %lu, writes %lu (allocating %lu), "
          "flushes %lu\n", dir, c->lazy, inline_reads, inline_writes,
          inline_allocs, inline_flushes);
  expect_inline (in_memory);
}

static void
run_in (const char *dir, bool in_memory)
{
  const struct fmt_case *c;

  FOR_EACH_FMT_CASE (c, cases)
    threads_in (dir, in_memory, c);
  if (fmt_is ("qcow2"))
    compressed_snapshot_in (dir);
}

int
main (int argc, char *argv[])
{
  char shm[256];

  test_init (argv[0]);
  rng_seed ();
  run_in (test_dir, false);

  snprintf (shm, sizeof shm, "/dev/shm/cowbd-test-engine-nowait-%s.%d",
            test_format, (int) getpid ());
  if (mkdir (shm, 0700) == 0) {
    run_in (shm, true);
    run ("rm -rf '%s'", shm);
  }
  else
    printf ("no /dev/shm: the in-memory case is not tested\n");

  return test_done ("nowait");
}
