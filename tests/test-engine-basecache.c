/* SPDX-License-Identifier: BSD-3-Clause */
/* The base cache (formats/basecache.h) against a "remote" that is a local
 * file read through a counting fetch function:
 *
 *  shared    two users of one base read the same 64 MiB, each with its
 *            own fetch function: every chunk is fetched once; after a
 *            close and reopen nothing but the fingerprint is fetched;
 *  changed   the remote's content changes under the same URI: the cache
 *            is discarded, the message says so, reads show the new data;
 *  evict     a bound of 2 MiB over a 16 MiB base: random reads stay
 *            right, the file's allocated blocks stay within the bound,
 *            also after a reopen with a smaller bound;
 *  eio       a failing fetch gives EIO, a later read retries and works;
 *            readers waiting for a chunk whose fetch fails get EIO from
 *            that one fetch; a remote that fails at open gives a message
 *            naming it;
 *  threads   8 threads read overlapping random ranges of a slow remote:
 *            right bytes, each chunk fetched once; then under a bound of
 *            1 MiB with one fetch in 7 failing: right bytes, no hang;
 *  corrupt   garbage records, data that no longer matches its record,
 *            records at the wrong places, a cut file, a damaged header:
 *            never a wrong byte, and what was damaged is fetched again;
 *  opens     concurrent opens of one base share one cache and fetch
 *            its fingerprint once; an open of another base goes on while
 *            the first one's remote is stuck;
 *  lock      another process opening the same cache runs uncached (and
 *            says so) while this one holds it, and reads right;
 *  args      a missing folder: one line naming it.
 *
 * $SEED reproduces the random parts.
 */
#include <config.h>

#include "basecache-test.h"

#define MiB (1024ULL * 1024)
#define CS BC_CHUNK_SIZE

static char self[4096];         /* this program, for the lock test */

static void
expect_msg (char *msg, const char *want)
{
  if (want == NULL && msg != NULL)
    die ("unexpected message: %s", msg);
  if (want && (msg == NULL || strstr (msg, want) == NULL))
    die ("message \"%s\" does not say \"%s\"", msg ? msg : "(none)", want);
  free (msg);
}

struct reader {
  struct basecache *bc;
  uint64_t size;
  unsigned seed;
  int order;                    /* 0: forwards in 1 MiB, 1: backwards in
                                 * odd sizes, 2: random, 3: random,
                                 * retrying reads that fail with EIO */
  unsigned reads;
  uint64_t rng;
};

static uint64_t
reader_rnd (struct reader *rd)
{
  rd->rng ^= rd->rng >> 12;
  rd->rng ^= rd->rng << 25;
  rd->rng ^= rd->rng >> 27;
  return rd->rng * 2685821657736338717ULL;
}

static void *
reader_run (void *arg)
{
  struct reader *rd = arg;
  uint8_t *buf = malloc (2 * MiB);
  uint64_t off, len, step = 3 * CS + 4097;
  unsigned i;

  if (buf == NULL)
    die ("out of memory");
  if (rd->order == 0)
    cache_check_all (rd->bc, rd->size, MiB, rd->seed);
  else if (rd->order == 1)
    for (off = rd->size; off > 0; off -= len) {
      len = off < step ? off : step;
      cache_check (rd->bc, buf, off - len, len, rd->seed);
    }
  else
    for (i = 0; i < rd->reads; i++) {
      off = reader_rnd (rd) % rd->size;
      len = 1 + reader_rnd (rd) % (512 * 1024);
      if (len > rd->size - off)
        len = rd->size - off;
      if (rd->order == 2)
        cache_check (rd->bc, buf, off, len, rd->seed);
      else {
        while (basecache_read (rd->bc, buf, len, off) == -1)
          if (errno != EIO)
            die ("read: %m");
        check_buf (buf, off, len, rd->seed);
      }
    }
  free (buf);
  return NULL;
}

static void
run_readers (struct reader *rd, unsigned n)
{
  pthread_t t[16];
  unsigned i;

  for (i = 0; i < n; i++) {
    rd[i].rng = rnd () | 1;
    if (pthread_create (&t[i], NULL, reader_run, &rd[i]) != 0)
      die ("pthread_create");
  }
  for (i = 0; i < n; i++)
    pthread_join (t[i], NULL);
}

/* ---- shared, restart, changed ---------------------------------------- */

static void
test_shared (const char *remote_file, uint64_t size)
{
  const char *dir = path ("shared");
  struct remote r1, r2;
  struct basecache *a, *b;
  struct basecache_stats st;
  struct reader rd[2];
  char *msg;

  make_dir (dir);
  remote_open (&r1, remote_file, size);
  remote_open (&r2, remote_file, size);
  a = cache_open (dir, "nbd://golden/shared", &r1, 0, &msg);
  expect_msg (msg, NULL);
  b = cache_open (dir, "nbd://golden/shared", &r2, 0, &msg);
  expect_msg (msg, NULL);
  if (remote_bytes (&r2) != 0)
    die ("the second open fetched %" PRIu64 " bytes", remote_bytes (&r2));
  remote_reset (&r1);
  rd[0] = (struct reader) { .bc = a, .size = size, .seed = 1, .order = 0 };
  rd[1] = (struct reader) { .bc = b, .size = size, .seed = 1, .order = 1 };
  run_readers (rd, 2);
  if (remote_bytes (&r1) + remote_bytes (&r2) != size)
    die ("two users fetched %" PRIu64 " bytes of %" PRIu64,
         remote_bytes (&r1) + remote_bytes (&r2), size);
  basecache_get_stats (b, &st);
  if (st.fetched_bytes != size || st.cached_bytes != size)
    die ("stats: fetched %" PRIu64 " cached %" PRIu64, st.fetched_bytes,
         st.cached_bytes);
  basecache_close (a);
  basecache_close (b);
  remote_close (&r2);

  /* A restart: only the fingerprint is fetched. */
  remote_reset (&r1);
  a = cache_open (dir, "nbd://golden/shared", &r1, 0, &msg);
  expect_msg (msg, NULL);
  basecache_get_stats (a, &st);
  if (remote_bytes (&r1) != st.fingerprint_bytes ||
      st.fingerprint_bytes > BC_SAMPLES * BC_SAMPLE_SIZE)
    die ("reopen fetched %" PRIu64 " bytes, fingerprint %" PRIu64,
         remote_bytes (&r1), st.fingerprint_bytes);
  remote_reset (&r1);
  cache_check_all (a, size, MiB, 1);
  basecache_get_stats (a, &st);
  if (remote_bytes (&r1) != 0 || st.misses != 0 || st.hits == 0)
    die ("after reopen: fetched %" PRIu64 ", %" PRIu64 " misses",
         remote_bytes (&r1), st.misses);
  basecache_close (a);
  remote_close (&r1);
  printf ("shared: ok\n");
}

static void
test_changed (const char *remote_file, uint64_t size)
{
  const char *dir = path ("shared");
  struct remote r;
  struct basecache *bc;
  char *msg;

  remote_write (remote_file, size, 2);
  remote_open (&r, remote_file, size);
  bc = cache_open (dir, "nbd://golden/shared", &r, 0, &msg);
  expect_msg (msg, "cache for nbd://golden/shared discarded: base changed");
  remote_reset (&r);
  cache_check_all (bc, size, MiB, 2);
  if (remote_bytes (&r) != size)
    die ("changed base: fetched %" PRIu64 " of %" PRIu64, remote_bytes (&r),
         size);
  basecache_close (bc);
  remote_close (&r);
  printf ("changed: ok\n");
}

/* ---- eviction -------------------------------------------------------- */

static void
check_usage (const char *dir, uint64_t bound, const char *when)
{
  struct stat st;
  const char *f = cache_file (dir);

  if (stat (f, &st) == -1)
    die ("%s: %m", f);
  /* the header and the table take a few blocks */
  if ((uint64_t) st.st_blocks * 512 > bound + 64 * 1024)
    die ("%s: %s uses %" PRIu64 " bytes, bound %" PRIu64, when, f,
         (uint64_t) st.st_blocks * 512, bound);
}

static void
test_evict (void)
{
  const char *dir = path ("evict"), *file = path ("evict.remote");
  uint64_t size = 16 * MiB, bound = 2 * MiB, off, len;
  uint8_t *buf = malloc (MiB);
  struct remote r;
  struct basecache *bc;
  struct basecache_stats st;
  unsigned i;
  char *msg;

  make_dir (dir);
  remote_write (file, size, 3);
  remote_open (&r, file, size);
  bc = cache_open (dir, "nbd://golden/evict", &r, bound, &msg);
  expect_msg (msg, NULL);
  for (i = 0; i < 3000; i++) {
    off = rnd_below (size);
    len = 1 + rnd_below (256 * 1024);
    cache_check (bc, buf, off, len > size - off ? size - off : len, 3);
    if (i % 100 == 99)
      check_usage (dir, bound, "random reads");
  }
  basecache_get_stats (bc, &st);
  if (st.evicted_bytes == 0 || st.cached_bytes > bound)
    die ("evicted %" PRIu64 ", cached %" PRIu64, st.evicted_bytes,
         st.cached_bytes);
  basecache_close (bc);

  /* A smaller bound at reopen evicts at once. */
  bc = cache_open (dir, "nbd://golden/evict", &r, MiB, &msg);
  expect_msg (msg, NULL);
  check_usage (dir, MiB, "reopen with 1 MiB");
  cache_check_all (bc, size, 3 * CS, 3);
  check_usage (dir, MiB, "a full read with 1 MiB");
  basecache_close (bc);
  remote_close (&r);
  free (buf);
  printf ("evict: ok\n");
}

/* ---- errors ---------------------------------------------------------- */

struct eio_reader {
  struct basecache *bc;
  int r, e;
};

static void *
eio_read (void *arg)
{
  struct eio_reader *x = arg;
  uint8_t buf[100];

  x->r = basecache_read (x->bc, buf, sizeof buf, 5 * CS + 10);
  x->e = errno;
  return NULL;
}

/* Two readers of one chunk of a slow remote that fails: one fetch, two
 * EIO. */
static void
eio_waiters (struct basecache *bc, struct remote *r)
{
  struct eio_reader x[2] = { { .bc = bc }, { .bc = bc } };
  pthread_t t[2];
  unsigned i;

  r->fail = 1;
  r->delay_us = 1000000;
  __atomic_store_n (&r->attempts, 0, __ATOMIC_SEQ_CST);
  for (i = 0; i < 2; i++)
    if (pthread_create (&t[i], NULL, eio_read, &x[i]) != 0)
      die ("pthread_create");
  for (i = 0; i < 2; i++)
    pthread_join (t[i], NULL);
  for (i = 0; i < 2; i++)
    if (x[i].r != -1 || x[i].e != EIO)
      die ("waiter %u: %d, %s", i, x[i].r, strerror (x[i].e));
  if (r->attempts != 1)
    die ("a failing chunk was fetched %u times by two readers",
         r->attempts);
  r->fail = 0;
  r->delay_us = 0;
}

static void
test_eio (void)
{
  const char *dir = path ("eio"), *file = path ("eio.remote");
  uint64_t size = 4 * MiB + 1000;
  struct basecache_opts o = { .dir = dir };
  struct remote r;
  struct basecache *bc;
  uint8_t buf[3 * CS];
  char *msg;

  make_dir (dir);
  remote_write (file, size, 4);
  remote_open (&r, file, size);
  r.fail = 1;
  if (basecache_open (&o, "nbd://golden/eio", size, remote_fetch, &r, &msg)
      != NULL || errno != EIO)
    die ("open over a failing remote: not EIO");
  expect_msg (msg, "nbd://golden/eio");
  r.fail = 0;
  bc = cache_open (dir, "nbd://golden/eio", &r, 0, &msg);
  expect_msg (msg, NULL);
  r.fail = 1;
  errno = 0;
  if (basecache_read (bc, buf, sizeof buf, CS + 17) != -1 || errno != EIO)
    die ("read from a failing remote: not EIO (%m)");
  r.fail = 0;
  eio_waiters (bc, &r);
  remote_reset (&r);
  cache_check (bc, buf, CS + 17, sizeof buf, 4);
  if (remote_bytes (&r) != 4 * CS)
    die ("retry fetched %" PRIu64 " bytes, expected 4 chunks",
         remote_bytes (&r));
  cache_check (bc, buf, size - 2000, 2000, 4);   /* the short last chunk */
  errno = 0;
  if (basecache_read (bc, buf, 2, size - 1) != -1 || errno != EINVAL)
    die ("read past the end: not EINVAL");
  basecache_close (bc);
  remote_close (&r);
  printf ("eio: ok\n");
}

static void
test_args (void)
{
  struct basecache_opts o = { .dir = path ("no-such-dir") };
  struct remote r = { .size = MiB };
  char *msg;

  if (basecache_open (&o, "nbd://x/y", MiB, remote_fetch, &r, &msg) != NULL
      || errno != ENOENT)
    die ("missing folder: not ENOENT");
  expect_msg (msg, "no-such-dir");
  printf ("args: ok\n");
}

/* ---- threads --------------------------------------------------------- */

static void
test_threads (void)
{
  const char *dir = path ("threads"), *file = path ("threads.remote");
  uint64_t size = 16 * MiB;
  struct reader rd[8];
  struct remote r;
  struct basecache *bc;
  char *msg;
  unsigned i;

  make_dir (dir);
  make_dir (path ("threads-evict"));
  remote_write (file, size, 5);
  remote_open (&r, file, size);
  bc = cache_open (dir, "nbd://golden/threads", &r, 0, &msg);
  expect_msg (msg, NULL);
  remote_reset (&r);
  r.delay_us = 300;
  for (i = 0; i < 8; i++)
    rd[i] = (struct reader) { .bc = bc, .size = size, .seed = 5,
                              .order = i < 6 ? 2 : (int) (i - 6),
                              .reads = 150 };
  run_readers (rd, 8);
  expect_all_fetched_once (&r);
  if (remote_bytes (&r) != size)
    die ("threads fetched %" PRIu64 " of %" PRIu64, remote_bytes (&r), size);
  basecache_close (bc);

  /* Eviction and failures under concurrency: a deadlock here is caught
   * by the alarm. */
  bc = cache_open (path ("threads-evict"), "nbd://golden/threads", &r, MiB,
                   &msg);
  expect_msg (msg, NULL);
  r.delay_us = 50;
  r.fail_one_in = 7;
  for (i = 0; i < 8; i++)
    rd[i] = (struct reader) { .bc = bc, .size = size, .seed = 5,
                              .order = 3, .reads = 100 };
  run_readers (rd, 8);
  basecache_close (bc);
  remote_close (&r);
  printf ("threads: ok\n");
}

/* ---- a damaged cache file -------------------------------------------- */

static void
scribble (const char *f, uint64_t off, uint64_t len, int random)
{
  uint8_t *buf = malloc (len);
  uint64_t i;
  int fd = open (f, O_WRONLY);

  if (buf == NULL || fd == -1)
    die ("%s: %m", f);
  for (i = 0; i < len; i++)
    buf[i] = random ? (uint8_t) rnd () : 0x5a;
  if (pwrite (fd, buf, len, (off_t) off) != (ssize_t) len)
    die ("%s: pwrite: %m", f);
  close (fd);
  free (buf);
}

/* Fills the cache of file completely, then closes it. */
static void
fill_cache (const char *dir, struct remote *r)
{
  struct basecache *bc = cache_open (dir, "nbd://golden/corrupt", r, 0,
                                     NULL);

  cache_check_all (bc, r->size, MiB, 6);
  basecache_close (bc);
}

/* Reopens, reads everything right, returns bytes fetched for reads. */
static uint64_t
reread (const char *dir, struct remote *r, const char *want_msg)
{
  struct basecache *bc;
  char *msg;

  bc = cache_open (dir, "nbd://golden/corrupt", r, 0, &msg);
  expect_msg (msg, want_msg);
  remote_reset (r);
  cache_check_all (bc, r->size, 5 * CS + 3, 6);
  basecache_close (bc);
  return remote_bytes (r);
}

static void
swap_records (const char *f, uint32_t a, uint32_t b)
{
  uint8_t ra[BC_RECORD_SIZE], rb[BC_RECORD_SIZE];
  int fd = open (f, O_RDWR);

  if (fd == -1 ||
      pread (fd, ra, sizeof ra, BC_TABLE_OFFSET + a * BC_RECORD_SIZE) != 8 ||
      pread (fd, rb, sizeof rb, BC_TABLE_OFFSET + b * BC_RECORD_SIZE) != 8 ||
      pwrite (fd, rb, sizeof rb, BC_TABLE_OFFSET + a * BC_RECORD_SIZE) != 8 ||
      pwrite (fd, ra, sizeof ra, BC_TABLE_OFFSET + b * BC_RECORD_SIZE) != 8)
    die ("%s: swapping records: %m", f);
  close (fd);
}

static void
test_corrupt (void)
{
  const char *dir = path ("corrupt"), *file = path ("corrupt.remote"), *f;
  uint64_t size = 8 * MiB, data;
  uint32_t n = bcfile_nchunks (size);
  struct remote r;
  uint64_t got;

  make_dir (dir);
  remote_write (file, size, 6);
  remote_open (&r, file, size);
  data = bcfile_data_offset (n);

  fill_cache (dir, &r);
  f = cache_file (dir);
  if (reread (dir, &r, NULL) != 0)
    die ("a clean cache fetched again");

  /* Garbage over every record: everything is fetched again. */
  scribble (f, BC_TABLE_OFFSET, (uint64_t) n * BC_RECORD_SIZE, 1);
  if ((got = reread (dir, &r, NULL)) != size)
    die ("garbage records: fetched %" PRIu64 " of %" PRIu64, got, size);

  /* Data that no longer matches its record: those chunks only. */
  scribble (f, data + 3 * CS + 100, 10, 0);
  scribble (f, data + 70 * CS, CS, 1);
  if ((got = reread (dir, &r, NULL)) != 2 * CS)
    die ("damaged data: fetched %" PRIu64 ", expected 2 chunks", got);

  /* Records at each other's places. */
  swap_records (f, 5, 9);
  if ((got = reread (dir, &r, NULL)) != 2 * CS)
    die ("swapped records: fetched %" PRIu64 ", expected 2 chunks", got);

  /* A file cut in the middle of the data, then in the table. */
  if (truncate (f, (off_t) (data + 7 * CS / 2)) == -1)
    die ("truncate: %m");
  if ((got = reread (dir, &r, NULL)) != size - 3 * CS)
    die ("cut file: fetched %" PRIu64 ", expected all but 3 chunks", got);
  if (truncate (f, BC_TABLE_OFFSET + 100) == -1)
    die ("truncate: %m");
  if ((got = reread (dir, &r, NULL)) != size)
    die ("cut table: fetched %" PRIu64 " of %" PRIu64, got, size);

  /* A damaged header: the whole file is discarded. */
  scribble (f, 30, 2, 1);
  if ((got = reread (dir, &r, "discarded: cache file header damaged"))
      != size)
    die ("damaged header: fetched %" PRIu64 " of %" PRIu64, got, size);
  if ((got = reread (dir, &r, NULL)) != 0)
    die ("after repair: fetched %" PRIu64, got);
  remote_close (&r);
  printf ("corrupt: ok\n");
}

/* ---- concurrent opens ------------------------------------------------- */

struct opener {
  const char *dir;
  struct remote *r;
  struct basecache *bc;
};

static void *
open_one (void *arg)
{
  struct opener *o = arg;
  char *msg;

  o->bc = cache_open (o->dir, "nbd://golden/opens", o->r, 0, &msg);
  expect_msg (msg, NULL);
  return NULL;
}

static void
test_opens (void)
{
  const char *dir = path ("opens"), *file = path ("opens.remote");
  uint64_t size = 2 * MiB;
  struct opener o[4];
  struct basecache_stats st;
  struct basecache *other;
  struct remote slow, fast;
  pthread_t t[4];
  unsigned i;
  char *msg;

  make_dir (dir);
  remote_write (file, size, 8);
  remote_open (&slow, file, size);
  remote_open (&fast, file, size);
  slow.gate = 1;
  for (i = 0; i < 4; i++) {
    o[i] = (struct opener) { .dir = dir, .r = &slow };
    if (pthread_create (&t[i], NULL, open_one, &o[i]) != 0)
      die ("pthread_create");
  }
  while (__atomic_load_n (&slow.attempts, __ATOMIC_SEQ_CST) == 0)
    usleep (1000);
  /* The first opener is stuck in its remote: another base opens. */
  other = cache_open (dir, "nbd://golden/other", &fast, 0, &msg);
  expect_msg (msg, NULL);
  __atomic_store_n (&slow.gate, 0, __ATOMIC_SEQ_CST);
  for (i = 0; i < 4; i++)
    pthread_join (t[i], NULL);
  if (slow.gate_timeout)
    die ("an open of another base waited for a stuck remote");
  basecache_get_stats (o[0].bc, &st);
  if (slow.attempts * BC_SAMPLE_SIZE != st.fingerprint_bytes)
    die ("4 concurrent opens fetched %u blocks, one fingerprint is %"
         PRIu64 " bytes", slow.attempts, st.fingerprint_bytes);
  for (i = 0; i < 4; i++) {
    basecache_get_stats (o[i].bc, &st);
    if (st.uncached)
      die ("concurrent open %u runs uncached", i);
    cache_check_all (o[i].bc, size, MiB, 8);
  }
  if (remote_bytes (&slow) != st.fingerprint_bytes + size)
    die ("4 handles fetched %" PRIu64 " bytes", remote_bytes (&slow));
  for (i = 0; i < 4; i++)
    basecache_close (o[i].bc);
  basecache_close (other);
  remote_close (&slow);
  remote_close (&fast);
  printf ("opens: ok\n");
}

/* ---- another process -------------------------------------------------- */

/* In a child: opens the cache another process holds, reads it all. */
static int
lock_child (const char *dir, const char *file, const char *size_s)
{
  uint64_t size = strtoull (size_s, NULL, 0);
  struct basecache_stats st;
  struct basecache *bc;
  struct remote r;
  char *msg;

  remote_open (&r, file, size);
  bc = cache_open (dir, "nbd://golden/lock", &r, 0, &msg);
  expect_msg (msg, "in use by another process");
  cache_check_all (bc, size, MiB, 7);
  basecache_get_stats (bc, &st);
  if (!st.uncached || remote_bytes (&r) != size)
    die ("child: uncached %d, fetched %" PRIu64, st.uncached,
         remote_bytes (&r));
  basecache_close (bc);
  remote_close (&r);
  return 0;
}

static void
test_lock (void)
{
  const char *dir = path ("lock"), *file = path ("lock.remote");
  uint64_t size = 2 * MiB;
  struct remote r;
  struct basecache *bc;
  char *msg;

  make_dir (dir);
  remote_write (file, size, 7);
  remote_open (&r, file, size);
  bc = cache_open (dir, "nbd://golden/lock", &r, 0, &msg);
  expect_msg (msg, NULL);
  cache_check_all (bc, size, MiB, 7);
  if (run ("'%s' --lock-child '%s' '%s' %" PRIu64, self, dir, file, size))
    die ("the second process failed");
  remote_reset (&r);
  cache_check_all (bc, size, MiB, 7);
  if (remote_bytes (&r) != 0)
    die ("the holder's cache was disturbed");
  basecache_close (bc);
  remote_close (&r);
  printf ("lock: ok\n");
}

int
main (int argc, char *argv[])
{
  const char *remote;
  ssize_t n;

  if (argc == 5 && strcmp (argv[1], "--lock-child") == 0)
    return lock_child (argv[2], argv[3], argv[4]);
  n = readlink ("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0)
    die ("/proc/self/exe: %m");
  self[n] = '\0';
  alarm (600);
  test_init (argv[0]);
  rng_seed ();
  remote = path ("shared.remote");
  remote_write (remote, 64 * MiB, 1);
  test_shared (remote, 64 * MiB);
  test_changed (remote, 64 * MiB);
  test_evict ();
  test_eio ();
  test_args ();
  test_threads ();
  test_corrupt ();
  test_opens ();
  test_lock ();
  test_cleanup ();
  return 0;
}
