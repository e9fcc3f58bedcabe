/* SPDX-License-Identifier: BSD-3-Clause */
/* Crash test of the base cache.  Each round a child process opens the
 * cache of a "remote" (a local file behind a counting fetch function) and
 * reads it with three threads at random, filling the cache (under a size
 * bound in some rounds, so that eviction runs too), and is killed with
 * SIGKILL at a random moment, perhaps in the middle of its open.  Then
 * the cache is opened here and every byte read through it must equal the
 * remote's.  Now and then the remote changes before the child starts (a
 * kill may then cut the discard of the old cache); every other round the
 * cache file is removed first, so that the child fills from nothing.
 *
 * The test must not pass by keeping nothing: in some of the rounds that
 * start from no cache, the open here must find chunks the killed child
 * made durable.
 *
 * At least 50 rounds ($ROUNDS to change), each under 0.15 s
 * of child time; $SEED reproduces a run.
 */
#include <config.h>

#include <signal.h>

#include "basecache-test.h"

#define MiB (1024ULL * 1024)
#define SIZE (8 * MiB + 12345)
#define URI "nbd+unix:///golden?socket=/run/crash.sock"

struct child_reader {
  struct basecache *bc;
  unsigned seed;
  uint64_t rng;
};

static void *
child_read (void *arg)
{
  struct child_reader *cr = arg;
  uint8_t *buf = malloc (MiB);
  uint64_t off, len;

  if (buf == NULL)
    die ("out of memory");
  for (;;) {                    /* until killed */
    cr->rng ^= cr->rng >> 12;
    cr->rng ^= cr->rng << 25;
    cr->rng ^= cr->rng >> 27;
    off = (cr->rng * 2685821657736338717ULL) % SIZE;
    len = 1 + (cr->rng >> 7) % MiB;
    cache_check (cr->bc, buf, off, len > SIZE - off ? SIZE - off : len,
                 cr->seed);
  }
  return NULL;
}

static void __attribute__ ((noreturn))
child (const char *dir, const char *file, unsigned seed, uint64_t bound)
{
  struct child_reader cr[3];
  pthread_t t[3];
  struct remote r;
  unsigned i;

  remote_open (&r, file, SIZE);
  r.delay_us = (unsigned) rnd_below (300);
  for (i = 0; i < 3; i++) {
    cr[i].bc = cache_open (dir, URI, &r, bound, NULL);
    cr[i].seed = seed;
    cr[i].rng = rnd () | 1;
    if (pthread_create (&t[i], NULL, child_read, &cr[i]) != 0)
      die ("pthread_create");
  }
  pthread_join (t[0], NULL);
  die ("child reader returned");
}

/* Kills the child after a random time; it must not have died by itself. */
static void
kill_child (pid_t pid)
{
  int status;

  usleep ((useconds_t) rnd_below (150000));
  kill (pid, SIGKILL);
  if (waitpid (pid, &status, 0) == -1)
    die ("waitpid: %m");
  if (!WIFSIGNALED (status) || WTERMSIG (status) != SIGKILL)
    die ("the child ended by itself (status 0x%x)", status);
}

/* Opens what the child left; returns the bytes it held at open. */
static uint64_t
verify (const char *dir, const char *file, unsigned seed, uint64_t bound)
{
  struct basecache_stats st;
  struct basecache *bc;
  struct remote r;
  size_t step = 1 + (size_t) rnd_below (2 * MiB);

  remote_open (&r, file, SIZE);
  bc = cache_open (dir, URI, &r, bound, NULL);
  basecache_get_stats (bc, &st);
  cache_check_all (bc, SIZE, step, seed);
  basecache_close (bc);
  remote_close (&r);
  return st.cached_bytes;
}

int
main (int argc, char *argv[])
{
  static const uint64_t bounds[] = { 0, 0, MiB, 3 * MiB };
  const char *dir, *file, *s = getenv ("ROUNDS");
  unsigned rounds = s ? (unsigned) atoi (s) : 60, round, seed = 1;
  uint64_t bound, kept = 0;
  bool fresh;
  char cmd[4096];
  pid_t pid;

  alarm (600);
  test_init (argv[0]);
  rng_seed ();
  dir = path ("cache");
  file = path ("remote");
  make_dir (dir);
  remote_write (file, SIZE, seed);
  for (round = 0; round < rounds; round++) {
    if (round % 7 == 6)
      remote_write (file, SIZE, ++seed);
    fresh = round % 2 == 1;
    if (fresh) {
      snprintf (cmd, sizeof cmd, "rm -f '%s'/*.basecache", dir);
      if (system (cmd) != 0)
        die ("%s", cmd);
    }
    bound = bounds[rnd_below (4)];
    fflush (stdout);
    pid = fork ();
    if (pid == -1)
      die ("fork: %m");
    if (pid == 0)
      child (dir, file, seed, bound);
    kill_child (pid);
    if (verify (dir, file, seed, bound) > 0 && fresh)
      kept++;
  }
  printf ("%u rounds; in %" PRIu64 " of those that started from no cache, "
          "the killed child left chunks\n",
          rounds, kept);
  if (kept == 0)
    die ("no round kept anything: the test proves nothing");
  test_cleanup ();
  return 0;
}
