/* SPDX-License-Identifier: BSD-3-Clause */
/* Fuzz target: an arbitrary file given to the engine as an image.
 *
 * The input becomes a memory file (memfd), opened by its /proc path with
 * the format probed, so every driver's header parsing is reached.  The
 * image is read (the start, the end, a few places between), its extents
 * walked, checked; then, opened read-write (which repairs an image marked
 * as needing a check), written, zeroed, trimmed, flushed and closed.  Any
 * crash or sanitizer report is a bug: a hostile image may only make calls
 * fail.  Backing files are not opened (IMAGE_OPEN_NO_BACKING): a header
 * naming /etc/passwd must not make the fuzzer read the machine's files.
 *
 * Built two ways from this one source: with libFuzzer (configure
 * --enable-fuzzing, CC=clang) as fuzz-image, and everywhere as
 * fuzz-image-replay, which runs the files named on its command line
 * through the same function: tests/test-fuzz-replay.sh feeds it the seed
 * corpus and the crashes found so far under the sanitizers.
 */
#include <config.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "image.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* Keeps the work per input bounded whatever size the header claims. */
#define MAX_IO (256u << 10)

static int
count_extent (void *opaque, const struct image_extent *e)
{
  return ++*(unsigned *) opaque >= 4096;      /* enough of them */
}

static void
read_some (struct image *img)
{
  static uint8_t buf[MAX_IO];
  uint64_t size = image_size (img), i;
  unsigned n = 0;

  for (i = 0; i < 4; i++) {
    uint64_t off = size / 4 * i;
    size_t len = size - off < MAX_IO ? (size_t) (size - off) : MAX_IO;
    image_pread (img, buf, len, off);
    image_pread_nowait (img, buf, len, off);
  }
  if (size > 0)
    image_pread (img, buf, 1, size - 1);
  image_extents (img, size, 0, 0, count_extent, &n);
}

static void
write_some (struct image *img)
{
  static uint8_t buf[MAX_IO];
  uint64_t size = image_size (img);
  size_t len = size < MAX_IO ? (size_t) size : MAX_IO;

  memset (buf, 0xa5, sizeof buf);
  image_pwrite (img, buf, len, 0, 0);
  image_pwrite (img, buf, len / 3, size / 2, IMAGE_FUA);
  image_zero (img, len, size - len, IMAGE_MAY_TRIM);
  image_zero (img, len / 2, size / 3, IMAGE_FAST_ZERO);
  image_trim (img, len, size / 5, 0);
  image_flush (img);
  read_some (img);
}

static void
check (const char *path, unsigned flags)
{
  struct image_open_opts o = {
    .flags = IMAGE_OPEN_NO_BACKING | IMAGE_OPEN_NO_REPAIR |
             (flags ? 0 : IMAGE_OPEN_READONLY),
    .cache_size = 1,            /* the smallest cache: eviction too */
  };
  struct image_check_result r;
  struct image *img = image_open (path, &o);

  if (img) {
    image_check (img, flags, &r, NULL, NULL);
    image_close (img);
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct image_open_opts ro = {
    .flags = IMAGE_OPEN_READONLY | IMAGE_OPEN_NO_BACKING,
    .cache_size = 1,
  };
  struct image_open_opts rw = {
    .flags = IMAGE_OPEN_NO_BACKING, .cache_size = 1,
  };
  struct image_info info;
  struct image *img;
  char path[64];
  int fd;

  fd = memfd_create ("fuzz-image", MFD_CLOEXEC);
  if (fd == -1 || (size && write (fd, data, size) != (ssize_t) size)) {
    perror ("memfd");
    abort ();
  }
  snprintf (path, sizeof path, "/proc/self/fd/%d", fd);

  img = image_open (path, &ro);
  if (img) {
    image_get_info (img, &info);
    read_some (img);
    image_close (img);
  }
  check (path, 0);
  check (path, IMAGE_CHECK_REPAIR_LEAKS | IMAGE_CHECK_REPAIR_ERRORS);

  img = image_open (path, &rw);
  if (img) {
    write_some (img);
    image_close (img);
  }
  close (fd);
  return 0;
}

#ifndef FUZZING_WITH_LIBFUZZER
/* fuzz-image-replay FILE...: each file through the same function. */
int
main (int argc, char *argv[])
{
  int i;

  for (i = 1; i < argc; i++) {
    FILE *fp = fopen (argv[i], "rb");
    uint8_t *buf;
    long len;

    if (fp == NULL || fseek (fp, 0, SEEK_END) == -1 ||
        (len = ftell (fp)) < 0 || fseek (fp, 0, SEEK_SET) == -1) {
      perror (argv[i]);
      return 1;
    }
    buf = malloc (len ? (size_t) len : 1);
    if (buf == NULL || fread (buf, 1, (size_t) len, fp) != (size_t) len) {
      perror (argv[i]);
      return 1;
    }
    fclose (fp);
    LLVMFuzzerTestOneInput (buf, (size_t) len);
    free (buf);
  }
  printf ("fuzz-image-replay: %d inputs\n", argc - 1);
  return 0;
}
#endif
