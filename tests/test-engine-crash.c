/* SPDX-License-Identifier: BSD-3-Clause */
/* Crash test.  A child process writes random data through the engine into
 * an overlay over a raw backing file, flushing now and then, and is killed
 * with SIGKILL at a random moment.  Then:
 *
 *  1. qemu-img check of the image as the crash left it finds no
 *     corruption (leaks are allowed: they are what the repair is for);
 *  2. sometimes, a second child starts the repair (a read-write open) and
 *     is killed in the middle of it too;
 *  3. a read-write open here runs the automatic check and repair, and the
 *     whole image is read: every 512-byte block holds its last flushed
 *     content or the content of a write issued after that flush, and
 *     nothing else (no byte that was never written there);
 *  4. after a clean close, qemu-img check finds nothing at all.
 *
 * The child keeps, in memory shared with us, for each block the write id
 * that was last flushed and the ids written since.  Block contents are a
 * pattern of (offset, id), so a block that landed at the wrong offset is
 * caught too.  Id 0 is the initial content, id 1 is zeros.
 *
 * Built once per format: test-engine-crash-qed, and on qcow2 with lazy
 * refcounts on and off, test-engine-crash-qcow2-lazy and -nolazy
 * (-DTEST_LAZY=1/0).  $ROUNDS overrides the number of rounds (at least
 * 50 by default) and $SEED reproduces a run.  With lazy refcounts
 * the image as the crash left it may hold refcounts that lag behind the
 * tables (that is what lazy means: the dirty bit tells every reader to
 * rebuild them), so in step 1 qemu-img check may report those and only
 * those, and only on an image marked dirty.
 */
#include <config.h>

#include <signal.h>
#include <sys/mman.h>
#include <time.h>

#include "engine-test.h"

#define CS 4096ULL
#define BLK 512ULL
#define SIZE (16ULL << 20)
#define BACKING_SIZE (12ULL << 20)
#define NBLK (SIZE / BLK)
#define MAXC 6                  /* unflushed writes remembered per block */

struct shared {
  uint32_t next_id;
  uint32_t flushed[NBLK];
  uint8_t ncand[NBLK];
  uint32_t cand[NBLK][MAXC];
};

static struct shared *sh;
static const struct fmt_case crash_case = {
  .format = TEST_FORMAT, .cs = CS, .qed_tables = 2, .lazy = TEST_LAZY,
};

static uint8_t
content (uint64_t off, uint32_t id)
{
  if (id == 0)
    return off < BACKING_SIZE ? pattern_byte (off, 1) : 0;
  if (id == 1)
    return 0;
  return pattern_byte (off, id);
}

/* ---- the child ---------------------------------------------------------- */

static void
flushed_all (void)
{
  uint64_t b;

  for (b = 0; b < NBLK; b++)
    if (sh->ncand[b]) {
      sh->flushed[b] = sh->cand[b][sh->ncand[b] - 1];
      __atomic_thread_fence (__ATOMIC_SEQ_CST);
      sh->ncand[b] = 0;
    }
}

static void
child_flush (struct image *img)
{
  CHECK (image_flush (img));
  flushed_all ();
}

/* Records id as a possible content of blocks [b0, b0 + n), flushing first
 * if a block has no room left. */
static void
record (struct image *img, uint64_t b0, uint64_t n, uint32_t id)
{
  uint64_t b;

  for (b = b0; b < b0 + n; b++)
    if (sh->ncand[b] == MAXC) {
      child_flush (img);
      break;
    }
  for (b = b0; b < b0 + n; b++) {
    sh->cand[b][sh->ncand[b]] = id;
    __atomic_thread_fence (__ATOMIC_SEQ_CST);
    sh->ncand[b]++;
  }
}

static void __attribute__ ((noreturn))
child (void)
{
  struct image *img = open_fmt (path ("ov.img"), 0, 0);
  static uint8_t buf[32 * BLK];

  for (;;) {
    uint64_t n = 1 + rnd_below (32), b0 = rnd_below (NBLK - n), i;
    unsigned kind = (unsigned) rnd_below (20);
    uint32_t id;

    if (kind < 2) {
      child_flush (img);
      continue;
    }
    if (kind < 4) {
      record (img, b0, n, 1);
      CHECK (image_zero (img, n * BLK, b0 * BLK,
                         kind == 2 ? IMAGE_MAY_TRIM : 0));
      continue;
    }
    id = __atomic_add_fetch (&sh->next_id, 1, __ATOMIC_SEQ_CST);
    for (i = 0; i < n * BLK; i++)
      buf[i] = content (b0 * BLK + i, id);
    record (img, b0, n, id);
    if (kind == 4) {
      CHECK (image_pwrite (img, buf, n * BLK, b0 * BLK, IMAGE_FUA));
      flushed_all ();           /* FUA flushed everything before it too */
    }
    else
      CHECK (image_pwrite (img, buf, n * BLK, b0 * BLK, 0));
  }
}

/* ---- the parent ------------------------------------------------------------ */

static void
sleep_us (uint64_t us)
{
  struct timespec ts = { .tv_sec = (time_t) (us / 1000000),
                         .tv_nsec = (long) (us % 1000000) * 1000 };
  nanosleep (&ts, NULL);
}

static pid_t
spawn (void (*fn) (void))
{
  pid_t pid;

  fflush (stdout);
  pid = fork ();
  if (pid == -1)
    die ("fork");
  if (pid == 0) {
    rng_state ^= (uint64_t) getpid () * 0x9e3779b97f4a7c15ULL;
    fn ();
  }
  return pid;
}

static void
kill_after (pid_t pid, uint64_t us)
{
  int status;

  sleep_us (us);
  kill (pid, SIGKILL);
  if (waitpid (pid, &status, 0) == -1)
    die ("waitpid");
  if (!WIFSIGNALED (status))
    die ("the child ended by itself (status %d): see its message above",
         WEXITSTATUS (status));
}

static void __attribute__ ((noreturn))
repairer (void)
{
  struct image *img = open_fmt (path ("ov.img"), 0, 0);

  image_close (img);
  for (;;)                      /* wait to be killed, like the writer */
    pause ();
}

/* With lazy refcounts: every error qemu-img check reports on the crashed
 * image is a refcount lagging behind the tables (stored below the
 * references, or COPIED on a cluster whose count is still 0), and the
 * image is marked dirty. */
static bool
only_lagging_refcounts (void)
{
  char line[512];
  FILE *fp;
  bool ok = true;

  if (run ("qemu-img info --output=json '%s' | grep -q '\"dirty-flag\": "
           "true'", path ("ov.img")) != 0)
    return false;
  snprintf (line, sizeof line, "qemu-img check -f %s '%s' 2>&1",
            test_format, path ("ov.img"));
  fp = popen (line, "r");
  if (fp == NULL)
    die ("popen");
  while (fgets (line, sizeof line, fp)) {
    uint64_t cl, rc, ref;
    if (strncmp (line, "ERROR", 5) != 0)
      continue;
    if (sscanf (line, "ERROR cluster %" SCNu64 " refcount=%" SCNu64
                " reference=%" SCNu64, &cl, &rc, &ref) == 3 && rc < ref)
      continue;
    if (strncmp (line, "ERROR OFLAG_COPIED", 18) == 0 &&
        strstr (line, "refcount=0\n"))
      continue;
    fprintf (stderr, "not a lagging refcount: %s", line);
    ok = false;
  }
  pclose (fp);
  return ok;
}

/* The block must be wholly one of its allowed contents. */
static void
verify_block (uint64_t b, const uint8_t *buf, unsigned round)
{
  uint32_t ids[MAXC + 1];
  unsigned n = 0, i;
  uint64_t j;

  ids[n++] = sh->flushed[b];
  for (i = 0; i < sh->ncand[b]; i++)
    ids[n++] = sh->cand[b][i];
  for (i = 0; i < n; i++) {
    for (j = 0; j < BLK; j++)
      if (buf[j] != content (b * BLK + j, ids[i]))
        break;
    if (j == BLK) {
      sh->flushed[b] = ids[i];  /* what the block holds from now on */
      sh->ncand[b] = 0;
      return;
    }
  }
  die ("round %u: block %" PRIu64 " (offset %" PRIu64 ") holds neither its "
       "flushed write (id %u) nor a later one (%u candidates); byte 0 is "
       "0x%02x", round, b, (uint64_t) (b * BLK), sh->flushed[b], sh->ncand[b],
       buf[0]);
}

static void
verify (unsigned round)
{
  struct image *img = open_fmt (path ("ov.img"), 0, 0);
  static uint8_t buf[SIZE];
  uint64_t b;

  CHECK (image_pread (img, buf, SIZE, 0));
  for (b = 0; b < NBLK; b++)
    verify_block (b, buf + b * BLK, round);
  CHECK (image_close (img));
}

int
main (int argc, char *argv[])
{
  static uint8_t base[BACKING_SIZE];
  unsigned rounds = 60, round;
  FILE *fp;
  int r;

  test_init (argv[0]);
  rng_seed ();
  if (getenv ("ROUNDS"))
    rounds = (unsigned) atoi (getenv ("ROUNDS"));

  sh = mmap (NULL, sizeof *sh, PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (sh == MAP_FAILED)
    die ("mmap");
  sh->next_id = 1;

  fill_pattern (base, BACKING_SIZE, 0, 1);
  fp = fopen (path ("base.raw"), "w");
  if (fp == NULL || fwrite (base, 1, BACKING_SIZE, fp) != BACKING_SIZE ||
      fclose (fp) != 0)
    die ("writing base.raw");
  create_fmt (path ("ov.img"), SIZE, "base.raw", &crash_case);

  for (round = 0; round < rounds; round++) {
    kill_after (spawn (child), 2000 + rnd_below (120000));

    /* As the crash left it: leaks are fine, corruption is not. */
    r = run ("qemu-img check -q -f %s '%s' >/dev/null 2>&1", test_format,
             path ("ov.img"));
    if (r == 2 && TEST_LAZY == 1 && only_lagging_refcounts ())
      r = 0;
    if (r != 0 && r != 3) {
      run ("qemu-img check -f %s '%s' >&2", test_format, path ("ov.img"));
      die ("round %u: qemu-img check after the crash: exit %d", round, r);
    }
    if (rnd_below (4) == 0)
      kill_after (spawn (repairer), rnd_below (3000));

    verify (round);
    qemu_img_check_clean (path ("ov.img"));
  }

  printf ("%u rounds\n", rounds);
  return test_done ("engine crash");
}
