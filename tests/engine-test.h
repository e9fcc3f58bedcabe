/* SPDX-License-Identifier: BSD-3-Clause */
/* Helpers for the engine's C tests: a scratch directory named after the
 * test, checked wrappers around image.h that abort with the engine's
 * message, patterns, and running external oracles (qemu-img).
 */
#ifndef COWBD_ENGINE_TEST_H
#define COWBD_ENGINE_TEST_H

#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "image.h"
#include "minmax.h"

/* Not every test uses every helper. */
#pragma GCC diagnostic ignored "-Wunused-function"

static char test_dir[1024];

/* Creates ./<name>.tmp and returns path names inside it. */
static void
test_init (const char *argv0)
{
  const char *base = strrchr (argv0, '/');
  char cmd[8192];

  base = base ? base + 1 : argv0;
  /* libtool wrappers name the real binary lt-NAME */
  if (strncmp (base, "lt-", 3) == 0)
    base += 3;
  snprintf (test_dir, sizeof test_dir, "%s.tmp", base);
  snprintf (cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", test_dir,
            test_dir);
  if (system (cmd) != 0)
    exit (1);
}

static void
test_cleanup (void)
{
  char cmd[8192];

  if (getenv ("KEEP_TMP"))
    return;
  snprintf (cmd, sizeof cmd, "rm -rf '%s'", test_dir);
  if (system (cmd) != 0)
    exit (1);
}

/* The end of main: cleans up and says what passed (and in which format,
 * in a test built per format).  Returns 0. */
static int
test_done (const char *what)
{
  test_cleanup ();
#ifdef TEST_FORMAT
  printf ("%s %s: ok\n", TEST_FORMAT, what);
#else
  printf ("%s: ok\n", what);
#endif
  return 0;
}

static const char *
path (const char *name)
{
  static char bufs[8][2048];
  static unsigned n;
  char *p = bufs[n++ % 8];

  snprintf (p, 2048, "%s/%s", test_dir, name);
  return p;
}

static void __attribute__ ((noreturn, format (printf, 1, 2)))
die (const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "FAIL: ");
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fprintf (stderr, "\n");
  exit (1);
}

#define CHECK(expr)                                                     \
  do {                                                                  \
    if ((expr) == -1)                                                   \
      die ("%s:%d: %s: %s", __FILE__, __LINE__, #expr, image_error ()); \
  } while (0)

/* Opens file as format (NULL: probe it). */
static struct image *
open_image_as (const char *file, const char *format, unsigned flags,
               uint64_t cache_size)
{
  struct image_open_opts o = {
    .format = format, .flags = flags, .cache_size = cache_size,
  };
  struct image *img = image_open (file, &o);

  if (img == NULL)
    die ("open %s: %s", file, image_error ());
  return img;
}

static struct image *
open_image (const char *file, unsigned flags, uint64_t cache_size)
{
  return open_image_as (file, NULL, flags, cache_size);
}

/* Format-specific create options for a struct image_create_opts
 * initialiser: IMAGE_OPTIONS ({ .name = "compat", .string = "0.10" }). */
#define IMAGE_OPTIONS(...)                                              \
  .options = (const struct image_option_value[]) { __VA_ARGS__ },       \
  .nr_options = sizeof ((const struct image_option_value[]) {           \
      __VA_ARGS__ }) / sizeof (struct image_option_value)

static void
create_image (const char *file, const char *format, uint64_t size,
              const char *backing, uint32_t cluster_size,
              uint32_t table_size)
{
  struct image_create_opts o = {
    .format = format, .size = size, .backing_file = backing,
    .cluster_size = cluster_size,
    IMAGE_OPTIONS ({ .name = "table_size", .number = table_size }),
  };
  o.nr_options = table_size ? 1 : 0;   /* QED's: none for the others */
  if (image_create (file, &o) == -1)
    die ("create %s: %s", file, image_error ());
}

/* A qcow2 image with its own options: lazy (-1 default, 0 off, 1 on),
 * compat (NULL default), refcount_bits (0 default). */
static void
create_qcow2 (const char *file, uint64_t size, const char *backing,
              uint32_t cluster_size, int lazy, const char *compat,
              unsigned refcount_bits)
{
  struct image_option_value v[3];
  struct image_create_opts o = {
    .format = "qcow2", .size = size, .backing_file = backing,
    .cluster_size = cluster_size, .options = v,
  };

  if (lazy >= 0)
    v[o.nr_options++] = (struct image_option_value) {
      .name = "lazy_refcounts", .number = (uint64_t) lazy };
  if (compat)
    v[o.nr_options++] = (struct image_option_value) {
      .name = "compat", .string = compat };
  if (refcount_bits)
    v[o.nr_options++] = (struct image_option_value) {
      .name = "refcount_bits", .number = refcount_bits };
  if (image_create (file, &o) == -1)
    die ("create %s: %s", file, image_error ());
}

static pthread_t
spawn_thread (void *(*fn) (void *), void *arg)
{
  pthread_t th;

  if (pthread_create (&th, NULL, fn, arg) != 0)
    die ("pthread_create");
  return th;
}

/* A whole test made of cases without arguments: runs them in order. */
typedef void test_case_fn (void);

static int
test_main (const char *argv0, const char *what, test_case_fn *const *cases)
{
  test_init (argv0);
  for (; *cases; cases++)
    (*cases) ();
  return test_done (what);
}

/* Runs a shell command; returns its exit status. */
static int __attribute__ ((format (printf, 1, 2)))
run (const char *fmt, ...)
{
  char cmd[8192];
  va_list ap;
  int r;

  va_start (ap, fmt);
  vsnprintf (cmd, sizeof cmd, fmt, ap);
  va_end (ap);
  r = system (cmd);
  if (r == -1 || !WIFEXITED (r))
    die ("%s: did not exit normally", cmd);
  return WEXITSTATUS (r);
}

/* The leaks qemu-img 7.2 reports on a QED file that has none: its
 * qed_bytes_to_clusters divides by cluster_size - 1 instead of
 * cluster_size, so a file of N clusters is counted as N * cs / (cs - 1)
 * clusters and the surplus, which lies past the end of the file, as
 * leaked.  0 for other formats and for files under cs - 1 clusters. */
static uint64_t
qemu_qed_phantom_leaks (const char *file)
{
  unsigned char h[8];
  uint64_t cs, size, n;
  struct stat st;
  FILE *fp = fopen (file, "r");

  if (fp == NULL || fread (h, 1, 8, fp) != 8 || stat (file, &st) == -1)
    die ("reading %s", file);
  fclose (fp);
  if (memcmp (h, "QED", 4) != 0)
    return 0;
  cs = h[4] | h[5] << 8 | (uint64_t) h[6] << 16 | (uint64_t) h[7] << 24;
  size = (uint64_t) st.st_size;
  n = (size + cs - 1) / cs;
  return ((size + cs - 1) & ~(cs - 1)) / (cs - 1) - n;
}

/* qemu-img check must find nothing: no corruption and no leak (but the
 * phantom leaks above). */
static void
qemu_img_check_clean (const char *file)
{
  uint64_t leaks = 0, phantom;
  char cmd[4096], line[256];
  FILE *fp;
  int r = run ("qemu-img check -q '%s' >/dev/null 2>&1", file);

  if (r == 0)
    return;
  phantom = qemu_qed_phantom_leaks (file);
  if (r == 3 && phantom > 0) {
    snprintf (cmd, sizeof cmd, "qemu-img check --output=json '%s'", file);
    fp = popen (cmd, "r");
    if (fp == NULL)
      die ("popen");
    while (fgets (line, sizeof line, fp))
      sscanf (line, " \"leaks\": %" SCNu64, &leaks);
    pclose (fp);
    if (leaks == phantom)
      return;
  }
  run ("qemu-img check '%s' >&2", file);
  die ("qemu-img check %s is not clean (exit %d, %" PRIu64 " phantom leaks "
       "expected from qemu's rounding)", file, r, phantom);
}

static void
write_file (const char *file, const uint8_t *buf, uint64_t len)
{
  FILE *fp = fopen (file, "w");

  if (fp == NULL || fwrite (buf, 1, len, fp) != len || fclose (fp) != 0)
    die ("writing %s", file);
}

static uint64_t
file_size (const char *file)
{
  struct stat st;

  if (stat (file, &st) == -1)
    die ("stat %s", file);
  return (uint64_t) st.st_size;
}

/* A byte that depends on the position and a seed, never zero. */
static inline uint8_t
pattern_byte (uint64_t offset, unsigned seed)
{
  uint64_t x = offset * 0x9e3779b97f4a7c15ULL + seed * 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 29;
  return (uint8_t) (x % 255 + 1);
}

static void
fill_pattern (uint8_t *buf, size_t len, uint64_t offset, unsigned seed)
{
  size_t i;

  for (i = 0; i < len; i++)
    buf[i] = pattern_byte (offset + i, seed);
}

/* Reads the whole image and compares it with model; reports the first
 * difference. */
static void
verify_image (struct image *img, const uint8_t *model, uint64_t size,
              const char *when)
{
  uint8_t *buf = malloc (size);
  uint64_t i;

  if (buf == NULL)
    die ("out of memory");
  CHECK (image_pread (img, buf, size, 0));
  for (i = 0; i < size; i++)
    if (buf[i] != model[i])
      die ("%s: byte %" PRIu64 " is 0x%02x, expected 0x%02x", when, i,
           buf[i], model[i]);
  free (buf);
}

/* Simple deterministic random numbers (xorshift64*). */
static uint64_t rng_state = 88172645463325252ULL;

static uint64_t
rnd (void)
{
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ULL;
}

static uint64_t
rnd_below (uint64_t n)
{
  return n ? rnd () % n : 0;
}

/* Seeds from $SEED (to reproduce a failure) or the clock; prints it. */
static void
rng_seed (void)
{
  const char *s = getenv ("SEED");
  struct timespec ts;

  if (s)
    rng_state = strtoull (s, NULL, 0);
  else {
    clock_gettime (CLOCK_REALTIME, &ts);
    rng_state = (uint64_t) ts.tv_nsec * 6364136223846793005ULL ^
                (uint64_t) ts.tv_sec;
  }
  if (rng_state == 0)
    rng_state = 1;
  printf ("SEED=%" PRIu64 "\n", rng_state);
  fflush (stdout);
}

/* ---- the format under test ------------------------------------------
 * An engine test is one source built once per format: tests/engine.mk
 * compiles test-engine-X.c into test-engine-X-qed, -qcow2 (and -raw where
 * it makes sense) with -DTEST_FORMAT='"qed"' and so on, and qcow2's crash
 * test with -DTEST_LAZY=0/1.  What differs between formats (geometry,
 * header bytes, table layout) sits in the helpers below or in a table of
 * struct fmt_case in the test, whose rows name the format they run in.
 */
#ifdef TEST_FORMAT
#ifndef TEST_LAZY
#define TEST_LAZY -1
#endif

static const char test_format[] = TEST_FORMAT;

static bool
fmt_is (const char *format)
{
  return strcmp (test_format, format) == 0;
}

/* One way to make an image of the format under test; a row of a test's
 * table.  Zero means the default; raw ignores everything but the size. */
struct fmt_case {
  const char *format;           /* the build this row runs in */
  uint32_t cs;                  /* cluster size */
  uint32_t qed_tables;          /* QED table size, in clusters */
  int lazy;                     /* qcow2 lazy refcounts, -1 default */
  const char *compat;           /* qcow2 "0.10" / "1.1" */
  unsigned refcount_bits;       /* qcow2 */
};

/* The next row of table for this format after *i (start with 0); NULL
 * at the end. */
static const struct fmt_case *
fmt_next (const struct fmt_case *table, size_t n, size_t *i)
{
  for (; *i < n; (*i)++)
    if (fmt_is (table[*i].format))
      return &table[(*i)++];
  return NULL;
}

#define FOR_EACH_FMT_CASE(c, table)                                     \
  for (size_t c##_i = 0;                                                \
       ((c) = fmt_next ((table), sizeof (table) / sizeof (table)[0],   \
                        &c##_i)) != NULL; )

static uint32_t
fmt_cluster_size (const struct fmt_case *c)
{
  if (c->cs)
    return c->cs;
  return fmt_is ("qed") ? 64 << 10 : fmt_is ("qcow2") ? 64 << 10 : 4096;
}

/* Guest bytes one L2 table maps (raw: a nominal table of 8-byte
 * entries, so that offsets derived from it stay in the same places). */
static uint64_t
fmt_l2_coverage (const struct fmt_case *c)
{
  uint64_t cs = fmt_cluster_size (c);
  uint64_t tables = fmt_is ("qed") ? (c->qed_tables ? c->qed_tables : 4) : 1;

  return tables * cs / 8 * cs;
}

/* Opens file in the format under test, named (raw is never probed). */
static struct image *
open_fmt (const char *file, unsigned flags, uint64_t cache_size)
{
  return open_image_as (file, test_format, flags, cache_size);
}

static void
create_fmt (const char *file, uint64_t size, const char *backing,
            const struct fmt_case *c)
{
  if (fmt_is ("qcow2"))
    create_qcow2 (file, size, backing, c->cs, c->lazy, c->compat,
                  c->refcount_bits);
  else if (fmt_is ("raw"))
    create_image (file, "raw", size, NULL, 0, 0);
  else
    create_image (file, test_format, size, backing, c->cs, c->qed_tables);
}

/* The image is marked clean (qemu-img info's dirty-flag false).  raw and
 * qcow2 version 2 have no such flag: nothing to check. */
static void
fmt_expect_clean_flag (const char *file, const struct fmt_case *c)
{
  if (fmt_is ("raw") || (c->compat && strcmp (c->compat, "0.10") == 0))
    return;
  if (run ("qemu-img info --output=json '%s' | grep -q '\"dirty-flag\": "
           "false'", file) != 0)
    die ("%s is still marked dirty after a clean close", file);
}

/* qemu-img check finds nothing (raw: qemu cannot check it). */
static void
fmt_check_clean (const char *file)
{
  if (!fmt_is ("raw"))
    qemu_img_check_clean (file);
}

/* Closes img, which must read as model before and after a read-only
 * reopen, and has qemu-img check find nothing in it. */
static void
fmt_close_verified (struct image *img, const char *file,
                    const uint8_t *model, uint64_t size, const char *when)
{
  verify_image (img, model, size, when);
  CHECK (image_close (img));
  img = open_fmt (file, IMAGE_OPEN_READONLY, 0);
  verify_image (img, model, size, "after reopen");
  CHECK (image_close (img));
  fmt_check_clean (file);
}
#endif /* TEST_FORMAT */

#endif /* COWBD_ENGINE_TEST_H */
