/* SPDX-License-Identifier: BSD-3-Clause */
/* Helpers for the base cache's tests: a "remote" that is a local file
 * read through a fetch function which counts what it serves, per byte
 * and per 64 KiB chunk, and can be made to fail or to be slow.
 */
#ifndef COWBD_BASECACHE_TEST_H
#define COWBD_BASECACHE_TEST_H

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>

#include "engine-test.h"
#include "basecache.h"
#include "basecache-file.h"

struct remote {
  const char *file;
  int fd;
  uint64_t size;
  uint64_t bytes;               /* bytes served (atomic) */
  uint32_t *fetches;            /* per chunk: fetches that covered it */
  int fail;                     /* fetches fail with EIO while set */
  unsigned fail_one_in;         /* and one fetch in this many fails */
  unsigned nfetch;              /* fetches so far (atomic) */
  unsigned attempts;            /* calls, failed ones too (atomic) */
  int gate;                     /* fetches wait (up to 20 s) while set */
  int gate_timeout;             /* set if one waited that long */
  unsigned delay_us;            /* each fetch sleeps this long */
};

/* Writes a remote of size bytes of pattern seed to file. */
static void
remote_write (const char *file, uint64_t size, unsigned seed)
{
  enum { STEP = 1 << 20 };
  uint8_t *buf = malloc (STEP);
  FILE *fp = fopen (file, "w");
  uint64_t off;

  if (buf == NULL || fp == NULL)
    die ("%s: cannot write", file);
  for (off = 0; off < size; off += STEP) {
    size_t n = size - off < STEP ? (size_t) (size - off) : STEP;

    fill_pattern (buf, n, off, seed);
    if (fwrite (buf, 1, n, fp) != n)
      die ("%s: write failed", file);
  }
  if (fclose (fp) != 0)
    die ("%s: close failed", file);
  free (buf);
}

static void
remote_open (struct remote *r, const char *file, uint64_t size)
{
  memset (r, 0, sizeof *r);
  r->file = file;
  r->size = size;
  r->fd = open (file, O_RDONLY);
  r->fetches = calloc (bcfile_nchunks (size) + 1, sizeof *r->fetches);
  if (r->fd == -1 || r->fetches == NULL)
    die ("%s: cannot open", file);
}

static void
remote_close (struct remote *r)
{
  close (r->fd);
  free (r->fetches);
}

/* Forgets what was counted so far. */
static void
remote_reset (struct remote *r)
{
  uint32_t c, n = bcfile_nchunks (r->size);

  __atomic_store_n (&r->bytes, 0, __ATOMIC_SEQ_CST);
  for (c = 0; c < n; c++)
    __atomic_store_n (&r->fetches[c], 0, __ATOMIC_SEQ_CST);
}

static uint64_t
remote_bytes (struct remote *r)
{
  return __atomic_load_n (&r->bytes, __ATOMIC_SEQ_CST);
}

static int
remote_fetch (void *opaque, void *buf, size_t count, uint64_t offset)
{
  struct remote *r = opaque;
  uint64_t c;
  ssize_t n;

  __atomic_add_fetch (&r->attempts, 1, __ATOMIC_SEQ_CST);
  for (c = 0; __atomic_load_n (&r->gate, __ATOMIC_SEQ_CST); c++) {
    if (c == 20000) {
      __atomic_store_n (&r->gate_timeout, 1, __ATOMIC_SEQ_CST);
      break;
    }
    usleep (1000);
  }
  if (r->delay_us)
    usleep (r->delay_us);
  if (__atomic_load_n (&r->fail, __ATOMIC_SEQ_CST) ||
      (r->fail_one_in &&
       __atomic_add_fetch (&r->nfetch, 1, __ATOMIC_SEQ_CST) % r->fail_one_in
       == 0)) {
    errno = EIO;
    return -1;
  }
  if (offset > r->size || count > r->size - offset)
    die ("fetch past the remote's end: %zu at %" PRIu64, count, offset);
  n = pread (r->fd, buf, count, (off_t) offset);
  if (n != (ssize_t) count)
    die ("%s: short read", r->file);
  __atomic_add_fetch (&r->bytes, count, __ATOMIC_SEQ_CST);
  for (c = offset / BC_CHUNK_SIZE; count > 0 &&
         c <= (offset + count - 1) / BC_CHUNK_SIZE; c++)
    __atomic_add_fetch (&r->fetches[c], 1, __ATOMIC_SEQ_CST);
  return 0;
}

/* Every chunk of the remote was fetched exactly once. */
static void
expect_all_fetched_once (struct remote *r)
{
  uint32_t c, n = bcfile_nchunks (r->size);

  for (c = 0; c < n; c++)
    if (r->fetches[c] != 1)
      die ("chunk %u fetched %u times, expected once", c, r->fetches[c]);
}

static struct basecache *
cache_open (const char *dir, const char *uri, struct remote *r,
            uint64_t max_bytes, char **msg)
{
  struct basecache_opts o = { .dir = dir, .max_bytes = max_bytes };
  struct basecache *bc = basecache_open (&o, uri, r->size, remote_fetch, r,
                                         msg);

  if (bc == NULL)
    die ("basecache_open %s in %s: %s: %s", uri, dir, strerror (errno),
         msg && *msg ? *msg : "(no message)");
  return bc;
}

/* Checks that buf holds [offset, offset + len) of seed's pattern. */
static void
check_buf (const uint8_t *buf, uint64_t offset, size_t len, unsigned seed)
{
  size_t i;

  for (i = 0; i < len; i++)
    if (buf[i] != pattern_byte (offset + i, seed))
      die ("byte %" PRIu64 " is 0x%02x, expected 0x%02x", offset + i,
           buf[i], pattern_byte (offset + i, seed));
}

/* Reads [offset, offset + len) through bc; checks it is seed's pattern. */
static void
cache_check (struct basecache *bc, uint8_t *buf, uint64_t offset, size_t len,
             unsigned seed)
{
  if (basecache_read (bc, buf, len, offset) == -1)
    die ("basecache_read %zu at %" PRIu64 ": %m", len, offset);
  check_buf (buf, offset, len, seed);
}

/* Reads all of size in step-sized reads and checks it. */
static void
cache_check_all (struct basecache *bc, uint64_t size, size_t step,
                 unsigned seed)
{
  uint8_t *buf = malloc (step);
  uint64_t off;

  if (buf == NULL)
    die ("out of memory");
  for (off = 0; off < size; off += step)
    cache_check (bc, buf, off, size - off < step ? size - off : step, seed);
  free (buf);
}

/* The one *.basecache file in dir. */
static const char *
cache_file (const char *dir)
{
  static char p[2048];
  struct dirent *d;
  DIR *dp = opendir (dir);
  int n = 0;

  if (dp == NULL)
    die ("%s: %m", dir);
  while ((d = readdir (dp)) != NULL)
    if (strstr (d->d_name, ".basecache")) {
      snprintf (p, sizeof p, "%s/%s", dir, d->d_name);
      n++;
    }
  closedir (dp);
  if (n != 1)
    die ("%s: %d cache files, expected 1", dir, n);
  return p;
}

static void
make_dir (const char *dir)
{
  if (mkdir (dir, 0700) == -1 && errno != EEXIST)
    die ("mkdir %s: %m", dir);
}

#endif /* COWBD_BASECACHE_TEST_H */
