/* SPDX-License-Identifier: BSD-3-Clause */
/* QED: on-disk layout and the driver's private state.
 *
 * The file is a sequence of clusters.  The first header_size clusters hold
 * the header (and the backing file name); then come the L1 table, L2
 * tables and data clusters in the order they were allocated:
 *
 *   +--------+----------+----------+------+------+----------+------+---
 *   | header | L1 table | L2 table | data | data | L2 table | data | ...
 *   +--------+----------+----------+------+------+----------+------+---
 *   0        l1_table_offset                                    file end
 *
 * A guest offset splits into an L1 index, an L2 index and a byte offset:
 *
 *   | L1 index (table bits) | L2 index (table bits) | byte (cluster bits) |
 *
 * Tables are table_size clusters of little-endian 64-bit entries.  An L1
 * entry is 0 (no L2 table) or the L2 table's offset.  An L2 entry is 0
 * (unallocated: read the backing file), 1 (zero cluster) or the data
 * cluster's offset.  Every offset is a multiple of cluster_size.
 *
 * Header fields (all little-endian; units in brackets):
 *
 *   0  magic               "QED\0"
 *   4  cluster_size        [bytes]    power of 2 in [4 KiB, 64 MiB]
 *   8  table_size          [clusters] power of 2 in [1, 16]
 *  12  header_size         [clusters]
 *  16  features            incompatible: unknown bits refuse the open
 *  24  compat_features     unknown bits are ignored
 *  32  autoclear_features  unknown bits are cleared on a read-write open
 *  40  l1_table_offset     [bytes]
 *  48  image_size          [bytes]    the guest-visible size
 *  56  backing_filename_offset [bytes from the start of the file]
 *  60  backing_filename_size   [bytes] not NUL-terminated
 *  64  (end of the fixed header)
 *
 * Allocation appends: a new cluster or L2 table goes at the end of the
 * file, so the file size is the image's physical size and no free-space
 * map exists.  Freed clusters (none are: zeroing and trim punch holes under
 * clusters that stay mapped) are therefore never handed out again.
 */
#ifndef COWBD_QED_H
#define COWBD_QED_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "cow.h"
#include "internal.h"
#include "metacache.h"

#define QED_MAGIC 0x00444551    /* "QED\0" read as little-endian */

#define QED_HEADER_BYTES 64
#define QED_MIN_CLUSTER_SIZE (4ULL << 10)
#define QED_MAX_CLUSTER_SIZE (64ULL << 20)
#define QED_DEFAULT_CLUSTER_SIZE (64U << 10)
#define QED_MIN_TABLE_SIZE 1
#define QED_MAX_TABLE_SIZE 16
#define QED_DEFAULT_TABLE_SIZE 4
/* We refuse backing file names longer than this (qemu writes at most
 * one cluster of header). */
#define QED_MAX_BACKING_NAME 4096

/* features */
#define QED_F_BACKING_FILE            0x01
#define QED_F_NEED_CHECK              0x02
#define QED_F_BACKING_FORMAT_NO_PROBE 0x04
#define QED_FEATURE_MASK              0x07
#define QED_COMPAT_FEATURE_MASK       0x00
#define QED_AUTOCLEAR_FEATURE_MASK    0x00

/* Special L2 entries. */
#define QED_UNALLOCATED 0
#define QED_ZERO_CLUSTER 1

struct qed_header {
  uint32_t magic;
  uint32_t cluster_size;
  uint32_t table_size;
  uint32_t header_size;
  uint64_t features;
  uint64_t compat_features;
  uint64_t autoclear_features;
  uint64_t l1_table_offset;
  uint64_t image_size;
  uint32_t backing_filename_offset;
  uint32_t backing_filename_size;
};

/* The driver's state.  Lock order: writeback_lock, then header_lock, then
 * the main lock (struct cow, cow.h).
 *
 * Everything below `lock` is protected by the main lock.  Data I/O
 * (reads and writes of data clusters) runs without it.  Table loads run
 * with it held: a cache miss briefly stalls other lookups, which
 * profiling may revisit.
 */
struct qed {
  struct cow cow;               /* first: the shared state and I/O paths
                                   (cow.h): locks, L1 table, L2 cache,
                                   file end, broken and leaked */
  struct image *img;
  struct qed_header h;          /* as on disk, host byte order */
  uint64_t cluster_size;
  unsigned cluster_bits;
  uint64_t table_bytes;         /* table_size * cluster_size */
  uint64_t table_entries;       /* entries per table */
  unsigned table_bits;          /* log2 (table_entries) */
  uint64_t header_end;          /* header_size * cluster_size */

  pthread_mutex_t header_lock;  /* header writes; cow.marked (NEED_CHECK
                                   durable in the header) */

  /* lock: */
  bool creating_table;          /* a new L2 table is being made: new
                                   allocations wait (cond) */
};

/* qed.c */
void qed_header_encode (const struct qed_header *h, uint8_t *b);
uint64_t qed_max_image_size (uint32_t cluster_size, uint32_t table_size);
const char *qed_geometry_error (uint64_t cluster_size, uint64_t table_size);
/* Writes the fixed header from q->h and syncs it.  Called with
 * header_lock held (or before the image is shared). */
int qed_write_header (struct qed *q);
/* Sets or clears NEED_CHECK durably, if not already so.  Called without
 * q->cow.lock. */
int qed_set_need_check (struct qed *q, bool on);

/* qed-table.c: lookup, table loads and writeback */
enum qed_entry_kind {
  QED_E_UNALLOC = COW_UNALLOC,
  QED_E_ZERO = COW_ZERO,
  QED_E_DATA = COW_DATA,
  QED_E_INVALID = COW_INVALID,
};
enum qed_entry_kind qed_entry_kind (struct qed *q, uint64_t entry,
                                    uint64_t file_size);
bool qed_table_offset_valid (struct qed *q, uint64_t offset,
                             uint64_t file_size);
uint64_t qed_l2_get (struct mc_entry *l2, uint64_t l2_index);
void qed_l2_set (struct mc_entry *l2, uint64_t l2_index, uint64_t value);
int qed_writeback (struct qed *q);
int qed_create_l2 (struct qed *q, uint64_t l1_index);

/* qed-cluster.c: what cow.c asks of QED, write zeroes and trim */
extern const struct cow_ops qed_cow_ops;
int qed_zero (struct image *img, uint64_t count, uint64_t offset,
              unsigned flags);
int qed_trim (struct image *img, uint64_t count, uint64_t offset,
              unsigned flags);

/* cow_ops' open and close hooks (qed.c) and check (qed-check.c). */
int qed_open_op (void *fmt, const struct image_open_opts *opts,
                 uint64_t file_size);
void qed_release (void *fmt);
int qed_write_back_all (void *fmt);
int qed_set_mark (void *fmt, bool on);
int qed_check_op (void *fmt, struct cow_check *k);

/* qed-resize.c */
int qed_resize (struct image *img, uint64_t size,
                enum image_prealloc prealloc, bool zero_new);

/* qed-create.c */
int qed_create (const char *filename, const struct image_create_opts *opts);
extern const struct image_option qed_create_options[];

#endif /* COWBD_QED_H */
