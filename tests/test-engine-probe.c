/* SPDX-License-Identifier: BSD-3-Clause */
/* Probing safety in the engine (formats/probe.c):
 *  - a raw image opened read-write by probing warns once, naming itself;
 *    read-only or with an explicit format it does not;
 *  - a write, zero or trim after which sector 0 would probe as qcow2 or
 *    QED fails with EPERM and changes nothing; others work; the
 *    non-blocking write never goes around the check;
 *  - two threads each writing half of a magic at once never leave the
 *    whole magic in sector 0: exactly one of them is refused (the
 *    changes are serialised);
 *  - with format "raw" the same writes work.
 */
#include <config.h>

#include <pthread.h>

#include "engine-test.h"

static const uint8_t qcow2_magic[4] = { 'Q', 'F', 'I', 0xfb };
static const uint8_t qed_magic[4] = { 'Q', 'E', 'D', 0 };

static unsigned warnings;
static char last_warning[1024];

static void
count_warning (const char *msg)
{
  warnings++;
  snprintf (last_warning, sizeof last_warning, "%s", msg);
}

static void
expect_eperm (int r, const char *what)
{
  if (r != -1 || image_errno () != EPERM)
    die ("%s: expected EPERM, got %d (%s)", what, r, image_error ());
  if (strstr (image_error (), "refused") == NULL)
    die ("%s: message says no refusal: %s", what, image_error ());
}

static void
expect_sector (struct image *img, const uint8_t *want4)
{
  uint8_t b[4];

  if (image_pread (img, b, 4, 0) == -1)
    die ("read: %s", image_error ());
  if (memcmp (b, want4, 4) != 0)
    die ("sector 0 starts %02x %02x %02x %02x", b[0], b[1], b[2], b[3]);
}

static void
test_warnings (const char *file)
{
  struct image *img;

  warnings = 0;
  img = open_image_as (file, NULL, 0, 0);
  if (warnings != 1 || strstr (last_warning, file) == NULL ||
      strstr (last_warning, "probing guessed raw") == NULL)
    die ("probed raw: %u warnings, last: %s", warnings, last_warning);
  image_close (img);
  image_close (open_image_as (file, NULL, IMAGE_OPEN_READONLY, 0));
  image_close (open_image_as (file, "raw", 0, 0));
  if (warnings != 1)
    die ("warned read-only or with format raw");
}

static void
test_refusals (const char *file)
{
  static const uint8_t start[4] = { 'Q', 'E', 'D', 1 };
  static const uint8_t mbr[2] = { 0x55, 0xaa };
  struct image *img = open_image_as (file, "auto", 0, 0);

  if (image_pwrite (img, start, 4, 0, 0) == -1)
    die ("harmless write: %s", image_error ());
  expect_eperm (image_pwrite (img, qcow2_magic, 4, 0, 0), "qcow2 magic");
  expect_eperm (image_pwrite (img, "", 1, 3, IMAGE_FUA), "last QED byte");
  expect_eperm (image_zero (img, 1, 3, 0), "zero of the last QED byte");
  expect_eperm (image_zero (img, 1, 3, IMAGE_MAY_TRIM), "zero, may trim");
  expect_eperm (image_trim (img, 1, 3, 0), "trim of the last QED byte");
  if (image_pwrite_nowait (img, "", 1, 3, 0) != -1 || errno != EAGAIN)
    die ("a non-blocking write went around the check");
  expect_sector (img, start);

  /* A whole sector of zeros, an MBR signature, writes past sector 0. */
  if (image_zero (img, 4096, 0, IMAGE_MAY_TRIM) == -1 ||
      image_pwrite (img, mbr, 2, 510, 0) == -1 ||
      image_pwrite (img, qcow2_magic, 4, 512, 0) == -1 ||
      image_trim (img, 512, 0, 0) == -1)
    die ("harmless change refused: %s", image_error ());
  image_close (img);

  /* Format given: anything goes. */
  img = open_image_as (file, "raw", 0, 0);
  if (image_pwrite (img, qcow2_magic, 4, 0, 0) == -1)
    die ("explicit raw: %s", image_error ());
  image_close (img);
  if (strcmp (image_probe (file), "qcow2") != 0)
    die ("the magic written does not probe as qcow2");
}

/* Two halves of the QED magic, written at once by two threads, round
 * after round from a sector of "xxxx": each alone is harmless, together
 * they would form the magic, so the guard must refuse one of them. */
#define ROUNDS 2000

struct half {
  struct image *img;
  uint64_t offset;
  pthread_barrier_t *barrier;
  unsigned refused;
};

static void *
write_half (void *arg)
{
  struct half *h = arg;
  unsigned i;

  for (i = 0; i < ROUNDS; i++) {
    pthread_barrier_wait (h->barrier);  /* sector reset */
    if (image_pwrite (h->img, qed_magic + h->offset, 2, h->offset, 0) == -1) {
      if (image_errno () != EPERM)
        die ("half: %s", image_error ());
      h->refused++;
    }
    pthread_barrier_wait (h->barrier);  /* both written */
  }
  return NULL;
}

static void
test_threads (const char *file)
{
  struct image *img = open_image_as (file, NULL, 0, 0);
  pthread_barrier_t barrier;
  struct half a = { .img = img, .offset = 0, .barrier = &barrier };
  struct half b = { .img = img, .offset = 2, .barrier = &barrier };
  pthread_t ta, tb;
  unsigned i;

  pthread_barrier_init (&barrier, NULL, 3);
  pthread_create (&ta, NULL, write_half, &a);
  pthread_create (&tb, NULL, write_half, &b);
  for (i = 0; i < ROUNDS; i++) {
    uint8_t s[4];
    if (image_pwrite (img, "xxxx", 4, 0, 0) == -1)
      die ("reset: %s", image_error ());
    pthread_barrier_wait (&barrier);
    pthread_barrier_wait (&barrier);
    if (image_pread (img, s, 4, 0) == -1)
      die ("read: %s", image_error ());
    if (memcmp (s, qed_magic, 4) == 0)
      die ("round %u: two writes together formed the QED magic", i);
  }
  pthread_join (ta, NULL);
  pthread_join (tb, NULL);
  pthread_barrier_destroy (&barrier);
  image_close (img);
  if (a.refused + b.refused != ROUNDS)
    die ("%u + %u refusals in %u rounds", a.refused, b.refused, ROUNDS);
}

int
main (int argc, char *argv[])
{
  const char *file;

  test_init (argv[0]);
  file = path ("disk.raw");
  create_image (file, "raw", 1 << 20, NULL, 0, 0);
  image_set_warn (count_warning);
  test_warnings (file);
  test_threads (file);
  test_refusals (file);
  test_cleanup ();
  return 0;
}
