/* SPDX-License-Identifier: BSD-3-Clause */
/* image_write_compressed (qcow2 compressed clusters written by the
 * engine), with qemu-img as the oracle:
 *
 *   - refusals: over an allocated or compressed cluster (EIO, as qemu),
 *     unaligned or short requests (EINVAL), raw and QED (EOPNOTSUPP);
 *   - packing: small compressed clusters share a host cluster (both L2
 *     descriptors, read from the file, point into it) and qemu-img check,
 *     which recounts every reference, finds the file clean - so the
 *     shared cluster's refcount is 2; data that runs over into the next
 *     host cluster is counted there too; with refcount_bits=1 nothing
 *     is shared;
 *   - incompressible data is stored as a plain cluster;
 *   - the last, partial cluster of an image of odd size;
 *   - after the file's free tail is cut, no compressed cluster goes on
 *     in a cluster cut off (its offset now holds other data);
 *   - several threads writing compressed clusters at once;
 *   - each image, reopened, reads back what was written, and qemu-img
 *     compare agrees with a raw copy; zlib and zstd.
 */
#include <config.h>

#include <fcntl.h>

#include "engine-test.h"

#define CS 65536ULL

static uint64_t
be64 (const uint8_t *p)
{
  uint64_t v = 0;
  int i;

  for (i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

/* The L2 entry of guest cluster i (in the first L2 table) as on disk. */
static uint64_t
l2_entry (const char *file, uint64_t i)
{
  uint8_t b[8];
  uint64_t l1, l2;
  int fd = open (file, O_RDONLY);

  if (fd == -1 || pread (fd, b, 8, 40) != 8)
    die ("reading %s", file);
  l1 = be64 (b);
  if (pread (fd, b, 8, (off_t) l1) != 8)
    die ("reading %s", file);
  l2 = be64 (b) & 0x00fffffffffffe00ULL;
  if (l2 == 0 || pread (fd, b, 8, (off_t) (l2 + 8 * i)) != 8)
    die ("%s: no L2 table", file);
  close (fd);
  return be64 (b);
}

/* A compressed descriptor's host byte offset and last byte (64 KiB
 * clusters: x = 62 - 8 = 54). */
static void
descriptor (uint64_t e, uint64_t *start, uint64_t *last)
{
  uint64_t x = 62 - (16 - 8);

  if (!(e & (1ULL << 62)))
    die ("entry 0x%" PRIx64 " is not compressed", e);
  *start = e & ((1ULL << x) - 1);
  *last = (*start & ~511ULL) + (((e >> x) & 0xff) + 1) * 512 - 1;
}

/* len bytes of text that compresses about tenfold (seeded). */
static void
fill_text (uint8_t *buf, size_t len, unsigned seed)
{
  static const char *const w[] = { "qcow2 ", "cluster ", "refcount ",
                                   "zstd ", "deflate ", "\n" };
  size_t i = 0;

  rng_state = 88172645463325252ULL + seed;
  while (i < len) {
    const char *s = w[rnd_below (6)];
    while (*s && i < len)
      buf[i++] = (uint8_t) *s++;
  }
}

static void
fill_random (uint8_t *buf, size_t len)
{
  size_t i;

  for (i = 0; i < len; i++)
    buf[i] = (uint8_t) rnd ();
}

static void
expect_errno (int r, int errnum, const char *what)
{
  if (r != -1 || image_errno () != errnum)
    die ("%s: expected %s, got %d (%s)", what, strerror (errnum), r,
         r == -1 ? image_error () : "success");
}

/* Writes model to a raw file and has qemu-img compare it with file. */
static void
qemu_compare (const char *file, const uint8_t *model, uint64_t size)
{
  const char *raw = path ("model.raw");

  write_file (raw, model, size);
  if (run ("qemu-img compare -q -f raw -F qcow2 '%s' '%s'", raw, file))
    die ("qemu-img compare: %s differs from what was written", file);
}

static uint64_t
qemu_compressed_clusters (const char *file)
{
  char cmd[4096], line[256];
  uint64_t n = 0;
  FILE *fp;

  snprintf (cmd, sizeof cmd, "qemu-img check --output=json '%s'", file);
  if ((fp = popen (cmd, "r")) == NULL)
    die ("popen");
  while (fgets (line, sizeof line, fp))
    sscanf (line, " \"compressed-clusters\": %" SCNu64, &n);
  pclose (fp);
  return n;
}

static const char *compression = "zlib";

static void
create_compressed (const char *file, uint64_t size, unsigned refcount_bits)
{
  struct image_create_opts o = {
    .format = "qcow2", .size = size,
    IMAGE_OPTIONS ({ .name = "refcount_bits", .number = refcount_bits },
                   { .name = "compression_type", .string = compression }),
  };
  if (image_create (file, &o) == -1)
    die ("create %s: %s", file, image_error ());
}

/* Closes img, checks file with qemu-img, reopens and verifies it. */
static void
close_and_verify (struct image *img, const char *file, const uint8_t *model,
                  uint64_t size)
{
  CHECK (image_close (img));
  qemu_img_check_clean (file);
  qemu_compare (file, model, size);
  img = open_image (file, IMAGE_OPEN_READONLY, 0);
  verify_image (img, model, size, "after reopen");
  CHECK (image_close (img));
}

static void
test_refusals (void)
{
  const char *file = path ("refuse.qcow2");
  uint8_t *buf = calloc (1, CS), *model = calloc (1, 4 * CS);
  struct image *img;

  fill_text (buf, CS, 1);
  create_compressed (file, 4 * CS, 0);
  img = open_image (file, 0, 0);
  CHECK (image_pwrite (img, buf, CS, 0, 0));
  expect_errno (image_write_compressed (img, buf, CS, 0), EIO,
                "over an allocated cluster");
  CHECK (image_write_compressed (img, buf, CS, CS));
  expect_errno (image_write_compressed (img, buf, CS, CS), EIO,
                "over a compressed cluster");
  expect_errno (image_write_compressed (img, buf, CS, 512), EINVAL,
                "unaligned");
  expect_errno (image_write_compressed (img, buf, 4096, 2 * CS), EINVAL,
                "short, not the last cluster");
  expect_errno (image_write_compressed (img, buf, CS, 4 * CS), ENOSPC,
                "past the end");
  memcpy (model, buf, CS);
  memcpy (model + CS, buf, CS);
  close_and_verify (img, file, model, 4 * CS);

  for (const char *const *f = (const char *const[]) { "raw", "qed", NULL };
       *f; f++) {
    const char *other = path (strcmp (*f, "raw") ? "o.qed" : "o.raw");
    create_image (other, *f, 4 * CS, NULL, 0, 0);
    img = open_image_as (other, *f, 0, 0);
    expect_errno (image_write_compressed (img, buf, CS, 0), EOPNOTSUPP, *f);
    CHECK (image_close (img));
  }
  free (buf);
  free (model);
}

/* Small compressed clusters share host clusters, and data running over a
 * host cluster's end is counted in both. */
static void
test_packing (unsigned refcount_bits)
{
  const char *file = path ("pack.qcow2");
  uint64_t n = 64, i, a0, a1, b0, b1, size = n * CS;
  uint8_t *model = calloc (1, size);
  struct image *img;

  create_compressed (file, size, refcount_bits);
  img = open_image (file, 0, 0);
  for (i = 0; i < n; i++) {
    uint8_t *p = model + i * CS;
    fill_text (p, CS, (unsigned) i);
    /* Every third cluster compresses less: the data crosses cluster
     * boundaries in the file. */
    if (i % 3 == 2)
      fill_random (p, CS / 2);
    CHECK (image_write_compressed (img, p, CS, i * CS));
  }
  CHECK (image_close (img));
  descriptor (l2_entry (file, 0), &a0, &a1);
  descriptor (l2_entry (file, 1), &b0, &b1);
  if (refcount_bits == 1) {
    if (a0 / CS == b0 / CS || a1 / CS == b0 / CS)
      die ("refcount_bits=1: two compressed clusters share a host cluster");
  }
  else if (a0 / CS != b0 / CS || b0 <= a0 || b0 > a1 + 1)
    die ("the first two compressed clusters do not share a host cluster "
         "(0x%" PRIx64 "-0x%" PRIx64 ", 0x%" PRIx64 ")", a0, a1, b0);
  if (qemu_compressed_clusters (file) != n)
    die ("qemu-img check counts %" PRIu64 " compressed clusters, not %"
         PRIu64, qemu_compressed_clusters (file), n);
  img = open_image (file, 0, 0);
  close_and_verify (img, file, model, size);
  free (model);
}

static void
test_packing_shared (void)
{
  test_packing (0);
}

static void
test_packing_refcount1 (void)
{
  test_packing (1);
}

/* Incompressible data, and the last cluster of an image of odd size. */
static void
test_plain_and_tail (void)
{
  const char *file = path ("tail.qcow2");
  uint64_t size = 2 * CS + 4096 + 512;
  uint8_t *model = calloc (1, size);
  struct image *img;

  create_compressed (file, size, 0);
  img = open_image (file, 0, 0);
  fill_random (model, CS);
  CHECK (image_write_compressed (img, model, CS, 0));
  fill_text (model + 2 * CS, size - 2 * CS, 7);
  CHECK (image_write_compressed (img, model + 2 * CS, size - 2 * CS,
                                 2 * CS));
  CHECK (image_close (img));
  if (l2_entry (file, 0) & (1ULL << 62))
    die ("random data was stored compressed");
  if (!(l2_entry (file, 2) & (1ULL << 62)))
    die ("the last cluster was not stored compressed");
  img = open_image (file, 0, 0);
  close_and_verify (img, file, model, size);
  free (model);
}

/* The file cut after a compressed cluster (make_empty frees everything
 * and truncates the free tail): the next compressed cluster must not go
 * on in the cut cluster's tail, whose offset a plain data cluster has
 * taken meanwhile. */
static void
test_after_cut (void)
{
  const char *file = path ("cut.qcow2");
  uint64_t size = 4 * CS;
  uint8_t *model = calloc (1, size);
  struct image *img;

  create_compressed (file, size, 0);
  img = open_image (file, 0, 0);
  fill_text (model, CS, 11);
  CHECK (image_write_compressed (img, model, CS, 0));
  CHECK (image_make_empty (img));
  memset (model, 0, CS);
  fill_pattern (model + CS, CS, CS, 12);
  CHECK (image_pwrite (img, model + CS, CS, CS, 0));
  fill_text (model + 2 * CS, CS, 13);
  CHECK (image_write_compressed (img, model + 2 * CS, CS, 2 * CS));
  verify_image (img, model, size, "after the cut");
  close_and_verify (img, file, model, size);
  free (model);
}

struct worker {
  struct image *img;
  uint8_t *model;
  uint64_t first, n;
};

static void *
write_some (void *arg)
{
  struct worker *w = arg;
  uint64_t i;

  for (i = w->first; i < w->first + w->n; i++)
    CHECK (image_write_compressed (w->img, w->model + i * CS, CS, i * CS));
  return NULL;
}

static void
test_threads (void)
{
  const char *file = path ("threads.qcow2");
  enum { T = 4, PER = 40 };
  uint64_t size = T * PER * CS, i;
  uint8_t *model = calloc (1, size);
  struct worker w[T];
  pthread_t th[T];
  struct image *img;

  for (i = 0; i < T * PER; i++)
    fill_text (model + i * CS, CS, (unsigned) i * 3);
  create_compressed (file, size, 0);
  img = open_image (file, 0, 0);
  for (i = 0; i < T; i++) {
    w[i] = (struct worker) { img, model, i * PER, PER };
    th[i] = spawn_thread (write_some, &w[i]);
  }
  for (i = 0; i < T; i++)
    pthread_join (th[i], NULL);
  verify_image (img, model, size, "after the threads");
  close_and_verify (img, file, model, size);
  free (model);
}

static test_case_fn *const cases[] = {
  test_refusals, test_packing_shared, test_packing_refcount1,
  test_plain_and_tail, test_after_cut, test_threads, NULL,
};

int
main (int argc, char *argv[])
{
  (void) argc;
  test_init (argv[0]);
  for (test_case_fn *const *c = cases; *c; c++)
    (*c) ();
#ifdef HAVE_ZSTD
  compression = "zstd";
  for (test_case_fn *const *c = cases; *c; c++)
    (*c) ();
#endif
  return test_done ("compressed writes (zlib, zstd)");
}
