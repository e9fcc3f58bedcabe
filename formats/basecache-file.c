/* SPDX-License-Identifier: BSD-3-Clause */
/* The base cache's file: one sparse file per remote base in the cache
 * folder, named after a hash of the remote's URI and size
 * (DIR/<16 hex digits>.basecache), holding the remote's bytes at their
 * own offsets after a header and a table of presence records:
 *
 *   0       header, 4 KiB (all numbers little-endian)
 *             0  magic "COWBDBC1"
 *             8  u32 version (1)
 *            12  u32 chunk size (65536)
 *            16  u64 remote size in bytes
 *            24  u32 samples, u32 sample size: the fingerprint's shape
 *            32  u32 CRC-32 of each sample block, 8 of them
 *            64  u32 length of the URI, then the URI (no NUL)
 *          4092  u32 CRC-32 of bytes 0..4091
 *   4096    presence records, 8 bytes per chunk:
 *             u32 CRC-32 of the chunk's data
 *             u32 check: CRC-32 of (chunk index, data CRC), so that a
 *                 record of zeros, garbage or one at the wrong place is
 *                 no record
 *   D       the data: chunk i at D + i * 65536, D the first multiple of
 *           the chunk size after the table; absent chunks are holes
 *
 * Crash rules (basecache.c keeps them; the numbers are cited there):
 *   C1. a record is written only after its chunk's data is durable
 *       (pwrite, then fdatasync, then the record);
 *   C2. a chunk is dropped by clearing its record before punching its
 *       data out;
 *   C3. a record's data CRC is checked against the data on the first
 *       read of the chunk after open; a chunk that fails is fetched
 *       again.  So a torn or scribbled file can cost fetches but never
 *       returns bytes the remote does not hold: even a record whose data
 *       was lost (C1 broken by a lying disk) is caught here;
 *   C4. a file whose header does not match the remote (bad checksum,
 *       other URI or size, changed fingerprint) is emptied (truncated,
 *       synced) before a new header is written, so old records never
 *       meet a new base.
 *
 * 64 KiB chunks: the default cluster of qcow2 and QED, so a clone's
 * copy-on-write of a cluster and a guest's cluster-sized reads need one
 * chunk each; large enough that the table is small (8 bytes per 64 KiB)
 * and a fetch is worth a round trip, small enough that a boot's scattered
 * 4 KiB reads do not fetch much they do not need.
 *
 * The fingerprint: CRC-32 of 4 KiB at eight places chosen from the size
 * alone (0, 1 MiB where the first partition usually starts and its file
 * system's superblock lives, five points spread evenly, the last 4 KiB),
 * fetched at every open.  A base replaced under the same URI almost
 * always differs in one of them (a rewritten superblock, other files);
 * a change that touches none of them is not seen.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "basecache-file.h"
#include "byte-swapping.h"
#include "cleanup.h"

#define BC_MAGIC        "COWBDBC1"
#define BC_VERSION      1
#define BC_HDR_CRC      (BC_HEADER_SIZE - 4)
#define BC_HDR_URI      64

uint32_t
bcfile_crc (const void *buf, size_t len)
{
  uLong crc = crc32 (0, Z_NULL, 0);

  while (len > 0) {
    uInt n = len > (1u << 30) ? (1u << 30) : (uInt) len;

    crc = crc32 (crc, buf, n);
    buf = (const uint8_t *) buf + n;
    len -= n;
  }
  return (uint32_t) crc;
}

uint32_t
bcfile_nchunks (uint64_t size)
{
  return (uint32_t) ((size + BC_CHUNK_SIZE - 1) / BC_CHUNK_SIZE);
}

uint64_t
bcfile_data_offset (uint32_t nchunks)
{
  uint64_t end = BC_TABLE_OFFSET + (uint64_t) nchunks * BC_RECORD_SIZE;

  return (end + BC_CHUNK_SIZE - 1) / BC_CHUNK_SIZE * BC_CHUNK_SIZE;
}

/* FNV-1a, 64 bits: only to spread names, the header holds the key. */
static uint64_t
bcfile_name_hash (const char *uri, uint64_t size)
{
  uint64_t h = 0xcbf29ce484222325ULL;
  uint8_t le[8];
  size_t i;

  for (i = 0; uri[i]; i++)
    h = (h ^ (uint8_t) uri[i]) * 0x100000001b3ULL;
  le64_store (le, size);
  for (i = 0; i < 8; i++)
    h = (h ^ le[i]) * 0x100000001b3ULL;
  return h;
}

char *
bcfile_path (const char *dir, const char *uri, uint64_t size)
{
  char *p;

  if (asprintf (&p, "%s/%016" PRIx64 ".basecache", dir,
                bcfile_name_hash (uri, size)) == -1)
    return NULL;
  return p;
}

/* The offsets of the sample blocks; returns how many (no repeats). */
static unsigned
bcfile_sample_offsets (uint64_t size, uint64_t *off)
{
  uint64_t cand[BC_SAMPLES];
  unsigned i, j, n = 0;

  cand[0] = 0;
  cand[1] = 1024 * 1024;
  for (i = 1; i <= 5; i++)
    cand[i + 1] = size / 6 * i;
  cand[7] = size >= BC_SAMPLE_SIZE ? size - BC_SAMPLE_SIZE : 0;
  for (i = 0; i < BC_SAMPLES; i++) {
    uint64_t o = cand[i] / BC_SAMPLE_SIZE * BC_SAMPLE_SIZE;

    if (o >= size)
      continue;
    for (j = 0; j < n && off[j] != o; j++)
      ;
    if (j == n)
      off[n++] = o;
  }
  return n;
}

int
bcfile_fingerprint (struct bcfile_key *key, basecache_fetch_fn fetch,
                    void *opaque, uint64_t *fetched)
{
  uint64_t off[BC_SAMPLES];
  uint8_t buf[BC_SAMPLE_SIZE];
  unsigned i, n = bcfile_sample_offsets (key->size, off);

  memset (key->fingerprint, 0, sizeof key->fingerprint);
  *fetched = 0;
  for (i = 0; i < n; i++) {
    size_t len = key->size - off[i] < BC_SAMPLE_SIZE ?
      (size_t) (key->size - off[i]) : BC_SAMPLE_SIZE;

    if (fetch (opaque, buf, len, off[i]) == -1)
      return -1;
    key->fingerprint[i] = bcfile_crc (buf, len);
    *fetched += len;
  }
  return 0;
}

/* 0: ours; 1: another open file description holds it; -1 with errno.
 * Whole-file OFD write lock: one writer per host, whatever the process
 * (within one process basecache.c opens each file once).  Like
 * lock.c, a file system without such locks goes on without them. */
int
bcfile_lock (int fd)
{
#ifdef F_OFD_SETLK
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

  if (fcntl (fd, F_OFD_SETLK, &fl) == 0)
    return 0;
  if (errno == EAGAIN || errno == EACCES)
    return 1;
  if (errno == ENOLCK || errno == EOPNOTSUPP || errno == EINVAL)
    return 0;
  return -1;
#else
  (void) fd;
  return 0;
#endif
}

int
bcfile_pread (int fd, void *buf, size_t count, uint64_t offset)
{
  while (count > 0) {
    ssize_t r = pread (fd, buf, count, (off_t) offset);

    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1)
      return -1;
    if (r == 0) {
      errno = EIO;              /* short: the file was cut under us */
      return -1;
    }
    buf = (uint8_t *) buf + r;
    count -= (size_t) r;
    offset += (uint64_t) r;
  }
  return 0;
}

int
bcfile_pwrite (int fd, const void *buf, size_t count, uint64_t offset)
{
  while (count > 0) {
    ssize_t r = pwrite (fd, buf, count, (off_t) offset);

    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1)
      return -1;
    buf = (const uint8_t *) buf + r;
    count -= (size_t) r;
    offset += (uint64_t) r;
  }
  return 0;
}

static void
bcfile_header_encode (uint8_t *h, const struct bcfile_key *key)
{
  size_t ulen = strlen (key->uri);
  unsigned i;

  memset (h, 0, BC_HEADER_SIZE);
  memcpy (h, BC_MAGIC, 8);
  le32_store (h + 8, BC_VERSION);
  le32_store (h + 12, BC_CHUNK_SIZE);
  le64_store (h + 16, key->size);
  le32_store (h + 24, BC_SAMPLES);
  le32_store (h + 28, BC_SAMPLE_SIZE);
  for (i = 0; i < BC_SAMPLES; i++)
    le32_store (h + 32 + 4 * i, key->fingerprint[i]);
  le32_store (h + BC_HDR_URI, (uint32_t) ulen);
  memcpy (h + BC_HDR_URI + 4, key->uri, ulen);
  le32_store (h + BC_HDR_CRC, bcfile_crc (h, BC_HDR_CRC));
}

/* The header h, read from a file, against key. */
static enum bcfile_verdict
bcfile_header_judge (const uint8_t *h, const struct bcfile_key *key)
{
  uint32_t ulen = le32_load (h + BC_HDR_URI);
  unsigned i;

  if (memcmp (h, BC_MAGIC, 8) != 0 ||
      le32_load (h + BC_HDR_CRC) != bcfile_crc (h, BC_HDR_CRC) ||
      le32_load (h + 8) != BC_VERSION ||
      le32_load (h + 12) != BC_CHUNK_SIZE ||
      le32_load (h + 24) != BC_SAMPLES ||
      le32_load (h + 28) != BC_SAMPLE_SIZE || ulen > BC_MAX_URI)
    return BCFILE_BAD_HEADER;
  if (le64_load (h + 16) != key->size || ulen != strlen (key->uri) ||
      memcmp (h + BC_HDR_URI + 4, key->uri, ulen) != 0)
    return BCFILE_OTHER_BASE;
  for (i = 0; i < BC_SAMPLES; i++)
    if (le32_load (h + 32 + 4 * i) != key->fingerprint[i])
      return BCFILE_CHANGED;
  return BCFILE_MATCH;
}

int
bcfile_check_header (int fd, const struct bcfile_key *key,
                     enum bcfile_verdict *verdict)
{
  uint8_t h[BC_HEADER_SIZE];
  ssize_t r;

  do
    r = pread (fd, h, sizeof h, 0);
  while (r == -1 && errno == EINTR);
  if (r == -1)
    return -1;
  if (r == 0)
    *verdict = BCFILE_EMPTY;
  else if (r < BC_HEADER_SIZE)
    *verdict = BCFILE_BAD_HEADER;
  else
    *verdict = bcfile_header_judge (h, key);
  return 0;
}

const char *
bcfile_verdict_reason (enum bcfile_verdict verdict)
{
  switch (verdict) {
  case BCFILE_BAD_HEADER: return "cache file header damaged";
  case BCFILE_OTHER_BASE: return "cache file belonged to another base";
  case BCFILE_CHANGED: return "base changed";
  default: return NULL;
  }
}

/* Empties the file and writes key's header (rule C4). */
int
bcfile_reset (int fd, const struct bcfile_key *key)
{
  uint8_t h[BC_HEADER_SIZE];

  bcfile_header_encode (h, key);
  if (ftruncate (fd, 0) == -1 || fdatasync (fd) == -1 ||
      bcfile_pwrite (fd, h, sizeof h, 0) == -1 || fdatasync (fd) == -1)
    return -1;
  return 0;
}

static uint32_t
bcfile_record_check (uint32_t chunk, uint32_t crc)
{
  uint8_t b[12];

  memcpy (b, "BCR1", 4);
  le32_store (b + 4, chunk);
  le32_store (b + 8, crc);
  return bcfile_crc (b, sizeof b);
}

void
bcfile_record_encode (uint8_t *rec, uint32_t chunk, uint32_t crc)
{
  le32_store (rec, crc);
  le32_store (rec + 4, bcfile_record_check (chunk, crc));
}

static bool
bcfile_record_decode (const uint8_t *rec, uint32_t chunk, uint32_t *crc)
{
  static const uint8_t zero[BC_RECORD_SIZE];

  if (memcmp (rec, zero, BC_RECORD_SIZE) == 0)
    return false;
  *crc = le32_load (rec);
  return le32_load (rec + 4) == bcfile_record_check (chunk, *crc);
}

/* Calls found for every chunk with a valid record.  A table the file
 * does not hold entirely (cut short) has no records past its end. */
int
bcfile_load_table (int fd, uint32_t nchunks,
                   void (*found) (void *arg, uint32_t chunk, uint32_t crc),
                   void *arg)
{
  enum { PER_READ = 8192 };
  CLEANUP_FREE uint8_t *buf = malloc (PER_READ * BC_RECORD_SIZE);
  uint32_t first, i, n, crc;
  ssize_t r;

  if (buf == NULL)
    return -1;
  for (first = 0; first < nchunks; first += n) {
    n = nchunks - first < PER_READ ? nchunks - first : PER_READ;
    do
      r = pread (fd, buf, (size_t) n * BC_RECORD_SIZE,
                 BC_TABLE_OFFSET + (off_t) first * BC_RECORD_SIZE);
    while (r == -1 && errno == EINTR);
    if (r == -1)
      return -1;
    n = (uint32_t) (r / BC_RECORD_SIZE);
    if (n == 0)
      break;
    for (i = 0; i < n; i++)
      if (bcfile_record_decode (buf + (size_t) i * BC_RECORD_SIZE,
                                first + i, &crc))
        found (arg, first + i, crc);
  }
  return 0;
}
