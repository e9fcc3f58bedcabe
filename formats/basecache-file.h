/* SPDX-License-Identifier: BSD-3-Clause */
/* The on-disk side of the base cache (basecache-file.c): file names,
 * the header and its key, the presence records, the fingerprint of the
 * remote, the lock.  No threads and no cache state here: basecache.c
 * owns those.  Layout and crash rules: basecache-file.c.
 */
#ifndef COWBD_BASECACHE_FILE_H
#define COWBD_BASECACHE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "basecache.h"

#define BC_CHUNK_SIZE   (64 * 1024)     /* one qcow2 / QED default cluster */
#define BC_HEADER_SIZE  4096
#define BC_TABLE_OFFSET BC_HEADER_SIZE
#define BC_RECORD_SIZE  8
#define BC_SAMPLES      8               /* blocks in the fingerprint */
#define BC_SAMPLE_SIZE  4096
#define BC_MAX_URI      (BC_HEADER_SIZE - 128)
#define BC_MAX_CHUNKS   (UINT32_MAX - 1)

/* What a cache file must match to be used. */
struct bcfile_key {
  const char *uri;
  uint64_t size;
  uint32_t fingerprint[BC_SAMPLES];     /* CRC-32 of each sample block */
};

/* Why an existing file's content cannot be used. */
enum bcfile_verdict {
  BCFILE_MATCH,                 /* same base: keep what it holds */
  BCFILE_EMPTY,                 /* new (or a reset that a crash cut) */
  BCFILE_BAD_HEADER,            /* torn, foreign or of another version */
  BCFILE_OTHER_BASE,            /* another URI or size (a name clash) */
  BCFILE_CHANGED,               /* same URI and size, other content */
};

uint32_t bcfile_crc (const void *buf, size_t len);
uint32_t bcfile_nchunks (uint64_t size);
uint64_t bcfile_data_offset (uint32_t nchunks);
char *bcfile_path (const char *dir, const char *uri, uint64_t size);
int bcfile_fingerprint (struct bcfile_key *key, basecache_fetch_fn fetch,
                        void *opaque, uint64_t *fetched);
int bcfile_lock (int fd);
int bcfile_check_header (int fd, const struct bcfile_key *key,
                         enum bcfile_verdict *verdict);
const char *bcfile_verdict_reason (enum bcfile_verdict verdict);
int bcfile_reset (int fd, const struct bcfile_key *key);
void bcfile_record_encode (uint8_t *rec, uint32_t chunk, uint32_t crc);
int bcfile_load_table (int fd, uint32_t nchunks,
                       void (*found) (void *arg, uint32_t chunk,
                                      uint32_t crc),
                       void *arg);
int bcfile_pread (int fd, void *buf, size_t count, uint64_t offset);
int bcfile_pwrite (int fd, const void *buf, size_t count, uint64_t offset);

#endif /* COWBD_BASECACHE_FILE_H */
