/* SPDX-License-Identifier: BSD-3-Clause */
/* qcow2: on-disk layout and the driver's private state.
 *
 * The file is a sequence of clusters (512 bytes to 2 MiB).  Cluster 0
 * holds the header, its extensions and the backing file name; every other
 * structure lives in clusters of its own, anywhere in the file:
 *
 *   +--------+----------+----------+----------+------+------+----------+---
 *   | header | refcount | refcount | L1 table | L2   | data | refcount | ...
 *   | + exts | table    | block    |          | table|      | block    |
 *   +--------+----------+----------+----------+------+------+----------+---
 *   0        (what qemu-img create and we write; other files differ)
 *
 * Mapping a guest offset (the L1 and L2 tables, all big-endian):
 *
 *   | L1 index | L2 index (l2_bits) | byte in cluster (cluster_bits) |
 *
 *   L1 entry: bits 9-55 L2 table offset (0: no table), bit 63 COPIED (the
 *             table's refcount is exactly 1), other bits reserved.
 *   L2 entry: bit 62 clear - standard cluster:
 *               bit 0 ZERO (v3: reads as zeros; the offset, if any, is a
 *               preallocation), bits 9-55 host cluster offset (0 and no
 *               ZERO: unallocated, read the backing file), bit 63 COPIED
 *               (refcount exactly 1: may be written in place), bits 1-8
 *               and 56-61 reserved;
 *             bit 62 set - compressed cluster: bits 0..x-1 the byte offset
 *               of the compressed data, bits x..61 the number of further
 *               512-byte sectors it spans (x = 62 - (cluster_bits - 8)).
 *   Extended L2 (incompatible bit 4): 16-byte entries, the second word a
 *   bitmap of 32 subclusters (bits 0-31 allocated, 32-63 reads as zeros).
 *
 * Reference counts: the refcount table (contiguous, resident in memory)
 * points to refcount blocks of one cluster each; a block holds
 * cluster_size * 8 / refcount_bits counts of 2^refcount_order bits each
 * (big-endian; below 8 bits, packed from the least significant bit).
 * Every cluster the file uses - header, tables, blocks, data - has a count
 * equal to the number of paths that reach it from the header and from the
 * active and snapshot L1 tables; 0 is free.  A count above 1 means shared
 * with an internal snapshot: such a cluster (and such an L2 table) is
 * copied before it is written, which is what COPIED tells without a
 * refcount lookup.
 *
 * Header fields (big-endian; units in brackets):
 *
 *   0  magic                 "QFI\xfb"
 *   4  version               2 (compat=0.10) or 3 (compat=1.1)
 *   8  backing_file_offset   [bytes] 0: no backing file
 *  16  backing_file_size     [bytes] at most 1023, not NUL-terminated
 *  20  cluster_bits          [log2 bytes] 9..21
 *  24  size                  [bytes] the guest-visible size
 *  32  crypt_method          0 (we refuse encryption)
 *  36  l1_size               [entries]
 *  40  l1_table_offset       [bytes]
 *  48  refcount_table_offset [bytes]
 *  56  refcount_table_clusters [clusters]
 *  60  nb_snapshots
 *  64  snapshots_offset      [bytes]
 *  -- version 3 --
 *  72  incompatible_features unknown bits refuse the open
 *  80  compatible_features   bit 0: lazy refcounts
 *  88  autoclear_features    unknown bits are cleared by a writer
 *  96  refcount_order        [log2 bits] 0..6 (version 2: always 4)
 * 100  header_length         [bytes] >= 104, multiple of 8
 * 104  compression_type      0 zlib, 1 zstd (present if header_length > 104)
 *
 * Then header extensions (type, length, data padded to 8 bytes) up to an
 * end marker, then the backing file name.
 *
 * What this engine does differently from qemu: allocation appends (the
 * QED path).  A new cluster, L2 table or refcount block always goes at
 * the end of the file and a freed cluster is never handed out again, so
 * no free-space search exists and rule 5 of shared/DESIGN.md holds by
 * construction.  Freed clusters get their refcount back to 0 and a hole
 * punched under them.  See qcow2-table.c for the write ordering.
 */
#ifndef COWBD_QCOW2_H
#define COWBD_QCOW2_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "cow.h"
#include "internal.h"
#include "metacache.h"

#define QCOW2_MAGIC 0x514649fbU /* "QFI\xfb" read as big-endian */

#define QCOW2_V2_HEADER_BYTES 72
#define QCOW2_V3_HEADER_BYTES 104
#define QCOW2_OUR_HEADER_BYTES 112 /* with compression_type and padding */
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_DEFAULT_CLUSTER_SIZE (64U << 10)
#define QCOW2_MAX_BACKING_NAME 1023
/* Memory caps, the same as qemu's: tables beyond them are refused. */
#define QCOW2_MAX_L1_BYTES (32ULL << 20)
#define QCOW2_MAX_REFTABLE_BYTES (8ULL << 20)
#define QCOW2_MAX_SNAPSHOTS 65536
#define QCOW2_MAX_SNAPSHOT_EXTRA 1024
#define QCOW2_MAX_SNAPSHOTS_BYTES (64ULL << 20)
#define QCOW2_MAX_EXTENSION_STRING 1023

/* incompatible_features */
#define QCOW2_INCOMPAT_DIRTY       (1ULL << 0)
#define QCOW2_INCOMPAT_CORRUPT     (1ULL << 1)
#define QCOW2_INCOMPAT_DATA_FILE   (1ULL << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ULL << 3)
#define QCOW2_INCOMPAT_EXTL2       (1ULL << 4)
#define QCOW2_INCOMPAT_KNOWN       0x1fULL
/* compatible_features */
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ULL << 0)
/* autoclear_features */
#define QCOW2_AUTOCLEAR_BITMAPS    (1ULL << 0)

/* Header extension types. */
#define QCOW2_EXT_END              0x00000000U
#define QCOW2_EXT_BACKING_FORMAT   0xe2792acaU
#define QCOW2_EXT_FEATURE_TABLE    0x6803f857U
#define QCOW2_EXT_BITMAPS          0x23852875U
#define QCOW2_EXT_CRYPTO           0x0537be77U
#define QCOW2_EXT_DATA_FILE        0x44415441U

/* Table entries. */
#define QCOW2_COPIED               (1ULL << 63)
#define QCOW2_COMPRESSED           (1ULL << 62)
#define QCOW2_ZERO                 1ULL
#define QCOW2_OFFSET_MASK          0x00fffffffffffe00ULL
#define QCOW2_L1_RESERVED          0x7f000000000001ffULL
#define QCOW2_L2_RESERVED          0x3f000000000001feULL
#define QCOW2_REFT_RESERVED        0x00000000000001ffULL

#define QCOW2_COMPRESSION_ZLIB 0
#define QCOW2_COMPRESSION_ZSTD 1

struct qcow2_header {
  uint32_t magic;
  uint32_t version;
  uint64_t backing_file_offset;
  uint32_t backing_file_size;
  uint32_t cluster_bits;
  uint64_t size;
  uint32_t crypt_method;
  uint32_t l1_size;
  uint64_t l1_table_offset;
  uint64_t refcount_table_offset;
  uint32_t refcount_table_clusters;
  uint32_t nb_snapshots;
  uint64_t snapshots_offset;
  uint64_t incompatible_features;
  uint64_t compatible_features;
  uint64_t autoclear_features;
  uint32_t refcount_order;
  uint32_t header_length;
  uint8_t compression_type;
};

/* A header extension we do not interpret, kept to be written back. */
struct qcow2_ext {
  uint32_t type;
  uint32_t len;
  uint8_t *data;
};

/* One internal snapshot: what the check and the allocator need. */
struct qcow2_snapshot {
  uint64_t l1_table_offset;
  uint32_t l1_size;
  char *id;
  char *name;
  /* What snapshot -l and info show. */
  uint32_t date_sec, date_nsec;
  uint64_t vm_clock_nsec;
  uint64_t vm_state_size;       /* the 64-bit extra field if present */
  uint64_t icount;              /* UINT64_MAX: not recorded */
  uint64_t disk_size;           /* the virtual size when it was taken
                                   (the image's size if not recorded) */
  uint64_t entry_offset;        /* where its table entry lies, and its */
  uint32_t entry_len;           /* length without padding: a new table
                                   copies the entry as it is */
};

/* A host range whose reference is being dropped.  The refcounts go down
 * only after the table change that dropped the reference is durable
 * (qcow2-table.c, writeback). */
struct qcow2_free {
  uint64_t offset;              /* host byte offset */
  uint64_t length;              /* bytes; every cluster it touches loses
                                   one reference */
  bool punch;                   /* punch a hole under a cluster whose count
                                   reaches 0 */
};

/* The last compressed cluster read, decompressed: sequential reads of a
 * compressed image decompress each cluster once. */
struct qcow2_zcache {
  pthread_mutex_t lock;
  uint64_t entry;               /* the L2 entry it was read for; 0: none */
  uint8_t *data;                /* one cluster */
  uint8_t *in;                  /* room for the compressed bytes */
};

/* The driver's state.  Lock order: writeback_lock (struct cow), then
 * header_lock, then the main lock (struct cow).
 *
 * Data I/O runs without the main lock; table and refcount block loads
 * run with it held.
 */
struct qcow2 {
  struct cow cow;               /* first: the shared state and I/O paths
                                   (cow.h) */
  struct image *img;
  struct qcow2_header h;        /* as on disk, host byte order */
  uint8_t *header_raw;          /* the first cluster as read (unknown
                                   header fields are kept from it) */
  struct qcow2_ext *exts;       /* unknown extensions, in order */
  size_t nr_exts;
  char *data_file;              /* external data file extension, if any */
  bool has_bitmaps;             /* bitmaps extension present */
  bool backing_format_stored;   /* the header names the backing format
                                   (img->backing_format may be probed) */
  uint64_t bitmap_dir_offset, bitmap_dir_size;
  uint32_t nb_bitmaps;
  uint8_t *feature_table;       /* the image's feature name table */
  size_t feature_table_len;

  /* Geometry. */
  uint64_t cluster_size;
  unsigned cluster_bits;
  bool extended_l2;
  unsigned l2_entry_bytes;      /* 8, or 16 with extended L2 */
  unsigned l2_bits;             /* log2 (entries per L2 table) */
  uint64_t l2_entries;
  uint64_t subcluster_size;     /* cluster_size / 32 with extended L2 */
  unsigned refcount_bits;
  unsigned rb_bits;             /* log2 (entries per refcount block) */
  uint64_t refcount_max;
  unsigned csize_shift;         /* compressed descriptors */
  uint64_t csize_mask;
  uint64_t coffset_mask;
  bool lazy;                    /* lazy refcounts in use */

  struct qcow2_snapshot *snapshots;
  uint64_t snapshots_size;      /* bytes the snapshot table spans */

  struct qcow2_zcache zc;

  pthread_mutex_t header_lock;  /* header writes; cow.marked (the dirty
                                   bit is durable) */
  bool corrupt;                 /* the corrupt bit is set; read without
                                   header_lock with __atomic_load */

  /* Under the main lock (q->cow.lock), as are cow's L1 table, L2 cache,
   * file_end, file_length, allocs, broken and leaked. */
  struct mc_table reftable;     /* always resident */
  uint64_t reftable_entries;
  struct metacache *rb_cache;
  uint64_t compressed_end;      /* compressed data lies below this: the
                                   file's length at open, to the sector,
                                   raised by each compressed write */
  uint64_t zfree;               /* where the next compressed cluster's
                                   data may go on (0: a new cluster);
                                   qcow2-compress.c */
  uint64_t counted_end;         /* the clusters in [cow.file_end,
                                   counted_end) are counted ahead (1)
                                   though nothing uses them yet
                                   (qcow2-refcount.c, "Counted ahead") */
  uint64_t counts_durable_end;  /* the counts of every cluster below this
                                   are durable */
  bool counts_new;              /* a count was raised that the next
                                   writeback must make durable before the
                                   entries: its first sync stays */
  struct qcow2_free *frees;     /* references dropped since the last
                                   writeback snapshot */
  size_t nr_frees, alloc_frees;
  int holes_read_zero;          /* -1 not known yet, 0/1: whether extents
                                   look for holes under data clusters
                                   (qcow2_block_status) */
};

/* ---- qcow2.c ---------------------------------------------------------- */
/* cow_ops' open and close hooks. */
int qcow2_open_op (void *fmt, const struct image_open_opts *opts,
                   uint64_t file_size);
void qcow2_release (void *fmt);
int qcow2_write_back_all (void *fmt);
int qcow2_set_mark (void *fmt, bool on);
void qcow2_header_encode (const struct qcow2_header *h, uint8_t *b);
/* Sets or clears the dirty bit durably (no-op for version 2).  Called
 * without q->cow.lock. */
int qcow2_set_dirty (struct qcow2 *q, bool on);
/* Clears the corrupt bit durably (after a successful repair). */
int qcow2_clear_corrupt (struct qcow2 *q);
/* Writes the whole header cluster from q->h, the extensions and the
 * backing name.  Called with header_lock held. */
int qcow2_write_header (struct qcow2 *q, const char *backing,
                        const char *backing_format);
/* Writes header bytes [start, start + len) from q->h and syncs. */
int qcow2_write_header_fields (struct qcow2 *q, size_t start, size_t len);
/* Geometry checks shared by open and create: a message, or NULL. */
const char *qcow2_geometry_error (unsigned cluster_bits,
                                  unsigned refcount_order);
/* L1 entries needed to address size bytes. */
uint64_t qcow2_l1_entries_for (uint64_t size, unsigned cluster_bits,
                               unsigned l2_bits);

/* ---- qcow2-snapshot.c --------------------------------------------------- */
int qcow2_read_snapshots (struct qcow2 *q, uint64_t file_size);
int qcow2_list_snapshots (struct image *img, image_snapshot_fn fn,
                          void *opaque);
void qcow2_free_snapshots (struct qcow2 *q);

/* ---- qcow2-snapshot-ops.c: create, apply, delete ------------------------ */
int qcow2_snapshot_create (struct image *img, const char *name);
int qcow2_snapshot_apply (struct image *img, const char *id_or_name);
int qcow2_snapshot_delete (struct image *img, const char *name);

/* ---- qcow2-table.c: entries, tables, writeback -------------------------- */
/* The state of an entry: cow.c's kinds, under qcow2's names. */
#define Q_UNALLOC COW_UNALLOC   /* read the backing file */
#define Q_ZERO COW_ZERO         /* reads as zeros */
#define Q_DATA COW_DATA         /* a host cluster */
#define Q_COMPRESSED COW_COMPRESSED /* compressed data */
#define Q_INVALID COW_INVALID   /* reserved bits, bad offset: corruption */
/* Classifies a standard L2 entry; *why receives what is wrong with an
 * invalid one.  file_end bounds valid offsets. */
enum cow_kind qcow2_entry_kind (const struct qcow2 *q, uint64_t entry,
                                  uint64_t file_end, const char **why);
/* A compressed descriptor's host byte range. */
void qcow2_compressed_range (const struct qcow2 *q, uint64_t entry,
                             uint64_t *offset, uint64_t *length);
/* Whether an L1 entry is well formed (NULL) or what is wrong with it. */
const char *qcow2_l1_entry_error (const struct qcow2 *q, uint64_t entry,
                                  uint64_t file_end);
uint64_t qcow2_l2_get (const struct qcow2 *q, struct mc_entry *l2,
                       uint64_t i);
uint64_t qcow2_l2_bitmap (const struct qcow2 *q, struct mc_entry *l2,
                          uint64_t i);
void qcow2_l2_set (const struct qcow2 *q, struct mc_entry *l2, uint64_t i,
                   uint64_t value);
/* Writes back dirty tables in crash order, then applies the dropped
 * references.  force: write refcount blocks even with lazy refcounts. */
int qcow2_writeback (struct qcow2 *q, bool force);
int qcow2_writeback_wbl (struct qcow2 *q, bool force);
/* Gives L1 slot i a new empty L2 table, or (shared) a private copy of the
 * one it has.  Called without q->cow.lock. */
int qcow2_create_l2 (struct qcow2 *q, uint64_t l1_index);
int qcow2_cow_l2 (struct qcow2 *q, uint64_t l1_index);
/* Writes the refcount blocks' dirty pages, no sync.  Called with
 * writeback_lock held, q->cow.lock not held. */
int qcow2_write_refblocks (struct qcow2 *q);
/* Records that the reference of [offset, offset + length) was dropped.
 * punch: give the space back once the count reaches 0.  A reader that
 * looked the old entry up just before the change may still read the old
 * cluster; for a trim or a zero a hole (zeros) is an answer it may get,
 * for a cluster replaced by a copy on write it is not, so those keep
 * their blocks.  Called with q->cow.lock held. */
int qcow2_drop_ref (struct qcow2 *q, uint64_t offset, uint64_t length,
                    bool punch);
/* Drops the references an L2 entry holds (nothing for unallocated and
 * plain zero entries).  Called with q->cow.lock held. */
int qcow2_drop_entry (struct qcow2 *q, uint64_t entry, bool punch);
/* Drops the references of the L2 table at l2off and of its entries, and
 * forgets the table; the caller clears the L1 entry that pointed to it.
 * A count is one per path from an L1 table, so the clusters of a table
 * shared with a snapshot lose one too.  On failure nothing is dropped.
 * Called with q->cow.lock held. */
int qcow2_drop_l2_table (struct qcow2 *q, uint64_t l2off);

/* ---- qcow2-refcount.c --------------------------------------------------- */
uint64_t qcow2_rb_get (const struct qcow2 *q, const uint8_t *block,
                       uint64_t i);
void qcow2_rb_set (const struct qcow2 *q, struct mc_table *block,
                   uint64_t i, uint64_t value);
/* The refcount of host cluster c; -1 with an error set.  Called with
 * q->cow.lock held. */
int qcow2_get_refcount (struct qcow2 *q, uint64_t c, uint64_t *value);
/* Sets it (the cluster must be covered by a refcount block). */
int qcow2_set_refcount (struct qcow2 *q, uint64_t c, uint64_t value);
/* Sets the counts ahead of from back to 0 (qcow2-refcount.c, "Counted
 * ahead").  Called with q->cow.lock held. */
void qcow2_uncount_ahead (struct qcow2 *q, uint64_t from);
/* Whether [offset, offset + length) of the file is covered by refcount
 * blocks.  Called with q->cow.lock held. */
bool qcow2_covered (struct qcow2 *q, uint64_t offset, uint64_t length);
/* Makes refcount blocks (and, if needed, a larger refcount table) cover
 * the file up to file_end + extra bytes.  Called with writeback_lock held
 * and q->cow.lock not held. */
int qcow2_cover_wbl (struct qcow2 *q, uint64_t extra);
int qcow2_cover (struct qcow2 *q, uint64_t extra);
/* Reserves n clusters at the end of the file, counting them (refcount 1)
 * and growing the file.  Returns the host offset or -1.  Called with
 * q->cow.lock held and coverage ensured. */
int64_t qcow2_alloc_clusters (struct qcow2 *q, uint64_t n);
/* Reserves n clusters at the end of the file (qcow2_alloc_clusters),
 * growing the refcount structure first if needed.  Called with
 * writeback_lock and q->cow.lock held; may drop and retake q->cow.lock. */
int64_t qcow2_reserve_clusters (struct qcow2 *q, uint64_t n);
/* Cuts the file after its last cluster with a reference (the dropped
 * references must be durable: the offsets cut off are handed out again).
 * Called with writeback_lock held, q->cow.lock not held. */
int qcow2_truncate_free_tail (struct qcow2 *q);
/* Refcount blocks for every cluster of [offset, offset + length) (the
 * check's rebuild).  Called with writeback_lock held. */
int qcow2_cover_range_wbl (struct qcow2 *q, uint64_t offset,
                           uint64_t length);
/* Validates a refcount table entry: NULL or what is wrong. */
const char *qcow2_reft_entry_error (const struct qcow2 *q, uint64_t entry,
                                    uint64_t file_end);
int qcow2_get_rb (struct qcow2 *q, uint64_t offset, struct mc_entry **e);

/* ---- qcow2-cluster.c: what cow.c asks of qcow2, zero and trim -------- */
extern const struct cow_ops qcow2_cow_ops;
int qcow2_zero (struct image *img, uint64_t count, uint64_t offset,
                unsigned flags);
int qcow2_trim (struct image *img, uint64_t count, uint64_t offset,
                unsigned flags);

/* ---- qcow2-compress.c --------------------------------------------------- */
int qcow2_zcache_init (struct qcow2 *q);
void qcow2_zcache_free (struct qcow2 *q);
/* Reads the compressed cluster described by entry into out (one
 * cluster). */
int qcow2_read_compressed (struct qcow2 *q, uint64_t entry, uint8_t *out);
/* The driver's write_compressed. */
int qcow2_write_compressed (struct image *img, const void *buf, size_t count,
                            uint64_t offset);
/* cow_ops' zreserve, zlink, zgive_back.  Called with q->cow.lock held. */
int qcow2_zreserve (void *fmt, uint64_t len, uint64_t *host);
int qcow2_zlink (void *fmt, const struct cow_run *r, uint64_t host,
                 uint64_t len);
void qcow2_zgive_back (void *fmt, uint64_t host, uint64_t len);
/* After the file was cut at file_end: compressed data no longer goes on
 * in a cluster cut off (the offset may be handed out again, to anything).
 * Called with q->cow.lock held. */
void qcow2_zfree_cut (struct qcow2 *q);

/* ---- qcow2-check.c: cow_ops' check ------------------------------------- */
int qcow2_check_op (void *fmt, struct cow_check *k);

/* ---- qcow2-resize.c ---------------------------------------------------- */
int qcow2_resize (struct image *img, uint64_t size,
                  enum image_prealloc prealloc, bool zero_new);

/* ---- qcow2-amend.c ----------------------------------------------------- */
int qcow2_amend (struct image *img, const struct image_create_opts *opts);

/* ---- qcow2-create.c ----------------------------------------------------- */
int qcow2_create (const char *filename, const struct image_create_opts *opts);
extern const struct image_option qcow2_create_options[];
/* Encodes the header extensions of a header we write: backing format,
 * the feature name table (if room), kept unknown extensions, end.
 * Returns the bytes used, or 0 if they do not fit in room. */
size_t qcow2_encode_extensions (uint8_t *b, size_t room,
                                const char *backing_format,
                                const struct qcow2_ext *exts, size_t nr_exts,
                                bool feature_table);

#endif /* COWBD_QCOW2_H */
