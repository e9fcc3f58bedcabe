/* SPDX-License-Identifier: BSD-3-Clause */
/* The base cache's read-ahead (basecache_opts.readahead) against a
 * "remote" that is a local file read through a counting fetch function:
 *
 *  seq     a reader going sequentially in 64 KiB reads: the chunk after
 *          its first read is fetched without being asked for; every
 *          byte right, every chunk fetched once, nothing fetched twice;
 *  fail    the read-ahead's fetch fails: at most the one read that was
 *          waiting for it gets its EIO; reads then fetch those chunks
 *          themselves and read right;
 *  close   the handle closed while a slow read-ahead is in flight: the
 *          close waits for it; a reopen reads every byte right and
 *          fetches nothing the read-ahead had stored.
 *
 * Waits for the asynchronous read-ahead are bounded (20 s): a liveness
 * check, never a timing one.
 */
#include <config.h>

#include "basecache-test.h"

#define MiB (1024ULL * 1024)
#define CS BC_CHUNK_SIZE
#define WINDOW 32

static unsigned calls;          /* fetch calls since reset (atomic) */
static unsigned fail_call;      /* this call fails; 0: none */

/* remote_fetch, counting calls; call number fail_call fails with EIO. */
static int
ra_fetch (void *opaque, void *buf, size_t count, uint64_t offset)
{
  unsigned n = __atomic_add_fetch (&calls, 1, __ATOMIC_SEQ_CST);

  if (n == __atomic_load_n (&fail_call, __ATOMIC_SEQ_CST)) {
    errno = EIO;
    return -1;
  }
  return remote_fetch (opaque, buf, count, offset);
}

static struct basecache *
ra_open (const char *dir, struct remote *r)
{
  struct basecache_opts o = { .dir = dir, .readahead = WINDOW };
  char *msg = NULL;
  struct basecache *bc = basecache_open (&o, "nbd://golden/ra", r->size,
                                         ra_fetch, r, &msg);

  if (bc == NULL)
    die ("basecache_open in %s: %m: %s", dir, msg ? msg : "(no message)");
  free (msg);
  __atomic_store_n (&calls, 0, __ATOMIC_SEQ_CST);
  remote_reset (r);
  return bc;
}

/* Waits (at most 20 s) until *counter reaches at least want. */
static void
wait_for (unsigned *counter, unsigned want, const char *what)
{
  unsigned i;

  for (i = 0; __atomic_load_n (counter, __ATOMIC_SEQ_CST) < want; i++) {
    if (i == 20000)
      die ("no read-ahead after 20 s: %s", what);
    usleep (1000);
  }
}

/* Every chunk fetched once, and nothing more. */
static void
expect_fetched_once (struct remote *r)
{
  expect_all_fetched_once (r);
  if (remote_bytes (r) != r->size)
    die ("fetched %" PRIu64 " bytes of %" PRIu64, remote_bytes (r), r->size);
}

/* One case: a fresh cache folder named after it, over the remote in
 * file, opened with read-ahead; the case's checks may close and reopen
 * t->bc. */
struct ra_case {
  const char *dir;
  struct remote r;
  struct basecache *bc;
  uint8_t buf[CS];
};

static void
run_case (const char *name, void (*check) (struct ra_case *),
          const char *file, uint64_t size)
{
  struct ra_case t = { .dir = path (name) };

  make_dir (t.dir);
  remote_open (&t.r, file, size);
  t.bc = ra_open (t.dir, &t.r);
  check (&t);
  basecache_close (t.bc);
  remote_close (&t.r);
  printf ("%s: ok\n", name);
}

static void
test_seq (struct ra_case *t)
{
  cache_check (t->bc, t->buf, 0, CS, 1);
  wait_for (&t->r.fetches[1], 1, "chunk 1 after a read of chunk 0");
  cache_check_all (t->bc, t->r.size, CS, 1);
  expect_fetched_once (&t->r);
}

static void
test_fail (struct ra_case *t)
{
  __atomic_store_n (&fail_call, 2, __ATOMIC_SEQ_CST);
  cache_check (t->bc, t->buf, 0, CS, 1);        /* call 1 */
  wait_for (&calls, 2, "the failing call");     /* the read-ahead's */
  /* The next read may have waited for the failing read-ahead: EIO. */
  if (basecache_read (t->bc, t->buf, CS, CS) == -1 && errno != EIO)
    die ("a read waiting for a failed read-ahead: %m, expected EIO");
  cache_check_all (t->bc, t->r.size, CS, 1);
  expect_fetched_once (&t->r);
  __atomic_store_n (&fail_call, 0, __ATOMIC_SEQ_CST);
}

static void
test_close (struct ra_case *t)
{
  struct remote *r = &t->r;
  uint32_t c, n = bcfile_nchunks (r->size);
  uint64_t stored = 0;

  r->delay_us = 100000;
  cache_check (t->bc, t->buf, 0, CS, 1);
  basecache_close (t->bc);
  for (c = 0; c < n; c++)
    stored += r->fetches[c] ? 1 : 0;
  r->delay_us = 0;
  t->bc = ra_open (t->dir, r);
  cache_check_all (t->bc, r->size, CS, 1);
  for (c = 0; c < n; c++)
    if (r->fetches[c] > 1)
      die ("chunk %u fetched %u times after the reopen", c, r->fetches[c]);
  if (remote_bytes (r) != r->size - stored * CS)
    die ("reopen fetched %" PRIu64 " bytes, expected %" PRIu64,
         remote_bytes (r), r->size - stored * CS);
  printf ("close: %" PRIu64 " chunks stored before the close\n", stored);
}

int
main (int argc, char *argv[])
{
  const char *remote;
  uint64_t size = 8 * MiB;

  (void) argc;
  alarm (300);
  test_init (argv[0]);
  remote = path ("ra.remote");
  remote_write (remote, size, 1);
  run_case ("seq", test_seq, remote, size);
  run_case ("fail", test_fail, remote, size);
  run_case ("close", test_close, remote, size);
  test_cleanup ();
  return 0;
}
