/* SPDX-License-Identifier: BSD-3-Clause */
/* What a read hit in the base cache costs, against one plain pread of the
 * same bytes from a file in the page cache.
 *
 *   make -C bench basecache-hit && bench/basecache-hit [DIR] [THREADS]
 *
 * Builds a 256 MiB "remote" and its cache in DIR (default /dev/shm: this
 * machine drops cold page cache within seconds), fills the cache, then
 * times random reads of 4 KiB, 64 KiB and 1 MiB through basecache_read
 * and through pread of the remote file, with THREADS threads (default 1),
 * alternating the two 5 times, and prints the median time per read of
 * each and their ratio.  Not a test:
 * speed is measured, never asserted.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "basecache.h"

#define SIZE (256ULL << 20)
#define READS 100000ULL
#define REPEATS 5

static int remote_fd;
static struct basecache *bc;
static size_t read_len;
static int use_cache;

static int
fetch (void *opaque, void *buf, size_t count, uint64_t offset)
{
  (void) opaque;
  return pread (remote_fd, buf, count, (off_t) offset) == (ssize_t) count ?
    0 : -1;
}

static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *
reader (void *arg)
{
  uint64_t x = (uintptr_t) arg * 0x9e3779b97f4a7c15ULL + 1, off, i;
  uint64_t n = READS / (read_len >> 12 > 64 ? 64 : read_len >> 12);
  char *buf = malloc (read_len);

  for (i = 0; i < n; i++) {
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    off = (x * 2685821657736338717ULL) % (SIZE - read_len) & ~4095ULL;
    if (use_cache ? basecache_read (bc, buf, read_len, off) :
        (pread (remote_fd, buf, read_len, (off_t) off) == (ssize_t) read_len
         ? 0 : -1)) {
      perror ("read");
      exit (1);
    }
  }
  free (buf);
  return (void *) (uintptr_t) n;
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;

  return (x > y) - (x < y);
}

/* Microseconds per read with nthreads threads. */
static double
run (unsigned nthreads)
{
  pthread_t t[64];
  uint64_t total = 0;
  void *n;
  double t0 = now ();
  unsigned i;

  for (i = 0; i < nthreads; i++)
    pthread_create (&t[i], NULL, reader, (void *) (uintptr_t) (i + 1));
  for (i = 0; i < nthreads; i++) {
    pthread_join (t[i], &n);
    total += (uintptr_t) n;
  }
  return (now () - t0) * 1e6 / total * nthreads;
}

int
main (int argc, char *argv[])
{
  const char *dir = argc > 1 ? argv[1] : "/dev/shm";
  unsigned nthreads = argc > 2 ? (unsigned) atoi (argv[2]) : 1;
  static const size_t lens[] = { 4096, 65536, 1 << 20 };
  struct basecache_opts o = { .dir = NULL };
  char remote[4096], cdir[4096], cmd[8300], *msg = NULL;
  double tc, tp, c[REPEATS], p[REPEATS];
  char *buf = malloc (1 << 20);
  uint64_t off;
  unsigned i, r;

  if (nthreads < 1 || nthreads > 64)
    nthreads = 1;
  snprintf (remote, sizeof remote, "%s/basecache-hit.%d.remote", dir,
            (int) getpid ());
  snprintf (cdir, sizeof cdir, "%s/basecache-hit.%d.d", dir, (int) getpid ());
  remote_fd = open (remote, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (remote_fd == -1 || mkdir (cdir, 0700) == -1) {
    perror (dir);
    return 1;
  }
  for (off = 0; off < SIZE; off += 1 << 20) {
    memset (buf, (int) (off >> 20) | 1, 1 << 20);
    if (pwrite (remote_fd, buf, 1 << 20, (off_t) off) != 1 << 20) {
      perror (remote);
      return 1;
    }
  }
  o.dir = cdir;
  bc = basecache_open (&o, "nbd://bench/hit", SIZE, fetch, NULL, &msg);
  if (bc == NULL) {
    fprintf (stderr, "basecache_open: %s\n", msg ? msg : strerror (errno));
    return 1;
  }
  for (off = 0; off < SIZE; off += 1 << 20)     /* fill */
    basecache_read (bc, buf, 1 << 20, off);
  printf ("%u thread(s), %s, hits on a full 256 MiB cache\n", nthreads, dir);
  printf ("%8s %14s %14s %7s\n", "read", "cache us/read", "pread us/read",
          "ratio");
  for (i = 0; i < 3; i++) {
    read_len = lens[i];
    for (r = 0; r < REPEATS; r++) {
      use_cache = 0;
      p[r] = run (nthreads);
      use_cache = 1;
      c[r] = run (nthreads);
    }
    qsort (p, REPEATS, sizeof *p, cmp_double);
    qsort (c, REPEATS, sizeof *c, cmp_double);
    tp = p[REPEATS / 2];
    tc = c[REPEATS / 2];
    printf ("%8zu %14.2f %14.2f %7.2f\n", read_len, tc, tp, tc / tp);
  }
  basecache_close (bc);
  snprintf (cmd, sizeof cmd, "rm -rf '%s' '%s'", remote, cdir);
  return system (cmd) == 0 ? 0 : 1;
}
