/* SPDX-License-Identifier: BSD-3-Clause */
/* qcow2: the driver table, the header (read, validated, extensions,
 * written), open and close, the dirty bit, information, and the
 * header-changing operations (set_backing, make_empty).  The layout is
 * drawn in qcow2.h; the I/O paths are in qcow2-cluster.c, tables and
 * writeback in qcow2-table.c, reference counts in qcow2-refcount.c, the
 * snapshot table in qcow2-snapshot.c, compressed clusters in
 * qcow2-compress.c, the check in qcow2-check.c and create in
 * qcow2-create.c.
 *
 * The dirty bit (version 3): set, durably, before the first change of an
 * open (a cluster appended, an entry changed), cleared only by a clean
 * close once everything - refcount blocks included - is written back.  A
 * read-write open that finds it set rebuilds the refcounts (the check with
 * repair) before anything else.  With lazy refcounts that is what makes
 * deferring refcount updates safe; without them refcounts are kept ahead
 * of the tables on disk, and the bit only makes the next open give back
 * the clusters a crash leaked.  Version 2 has no dirty bit: a crash there
 * can leave leaks (never corruption), which `check -r leaks` repairs.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "byte-swapping.h"
#include "checked-overflow.h"
#include "cleanup.h"
#include "header.h"
#include "minmax.h"
#include "qcow2.h"
#include "rounding.h"

/* ---- the header --------------------------------------------------------- */

/* Where each header field lies (qcow2.h draws it): version 2's, then
 * the ones version 3 adds. */
#define F(name, at) HDR_FIELD (struct qcow2_header, name, at)
static const struct hdr_field v2_fields[] = {
  F (magic, 0), F (version, 4), F (backing_file_offset, 8),
  F (backing_file_size, 16), F (cluster_bits, 20), F (size, 24),
  F (crypt_method, 32), F (l1_size, 36), F (l1_table_offset, 40),
  F (refcount_table_offset, 48), F (refcount_table_clusters, 56),
  F (nb_snapshots, 60), F (snapshots_offset, 64),
};
static const struct hdr_field v3_fields[] = {
  F (incompatible_features, 72), F (compatible_features, 80),
  F (autoclear_features, 88), F (refcount_order, 96),
  F (header_length, 100),
};
/* Only in a header longer than version 3's 104 bytes. */
static const struct hdr_field long_fields[] = { F (compression_type, 104) };
#undef F
#define NR(a) (sizeof (a) / sizeof (a)[0])

static bool
qcow2_probe (const uint8_t *buf, size_t len)
{
  return hdr_has_magic (buf, len, HDR_BE, QCOW2_MAGIC);
}

static void
header_decode (const uint8_t *b, struct qcow2_header *h)
{
  hdr_decode (v2_fields, NR (v2_fields), HDR_BE, b, h);
  h->compression_type = 0;
  if (h->version < 3) {
    h->incompatible_features = h->compatible_features = 0;
    h->autoclear_features = 0;
    h->refcount_order = 4;
    h->header_length = QCOW2_V2_HEADER_BYTES;
    return;
  }
  hdr_decode (v3_fields, NR (v3_fields), HDR_BE, b, h);
  if (h->header_length > QCOW2_V3_HEADER_BYTES)
    hdr_decode (long_fields, NR (long_fields), HDR_BE, b, h);
}

void
qcow2_header_encode (const struct qcow2_header *h, uint8_t *b)
{
  hdr_encode (v2_fields, NR (v2_fields), HDR_BE, h, b);
  if (h->version < 3)
    return;
  hdr_encode (v3_fields, NR (v3_fields), HDR_BE, h, b);
  if (h->header_length > QCOW2_V3_HEADER_BYTES)
    hdr_encode (long_fields, NR (long_fields), HDR_BE, h, b);
}

int
qcow2_write_header_fields (struct qcow2 *q, size_t start, size_t len)
{
  uint8_t b[QCOW2_OUR_HEADER_BYTES];

  assert (start + len <= sizeof b);
  memcpy (b, q->header_raw, MIN ((size_t) q->h.header_length, sizeof b));
  qcow2_header_encode (&q->h, b);
  if (source_pwrite (q->img->src, b + start, len, start) == -1 ||
      cow_sync (&q->cow) == -1) {
    sticky_set (q->img);
    return error_syscall (q->img, "writing the header");
  }
  memcpy (q->header_raw + start, b + start, len);
  return 0;
}

/* Writes the header cluster b, q->h encoded into it with the backing
 * file name's place; on failure q->h is as it was. */
static int
write_header_cluster (struct qcow2 *q, uint8_t *b, uint64_t name_offset,
                      size_t name_len)
{
  struct qcow2_header saved = q->h;

  q->h.backing_file_offset = name_offset;
  q->h.backing_file_size = (uint32_t) name_len;
  qcow2_header_encode (&q->h, b);
  if (source_pwrite (q->img->src, b, q->cluster_size, 0) == -1 ||
      cow_sync (&q->cow) == -1) {
    q->h = saved;
    sticky_set (q->img);
    return error_syscall (q->img, "writing the header");
  }
  memcpy (q->header_raw, b, q->cluster_size);
  return 0;
}

int
qcow2_write_header (struct qcow2 *q, const char *backing,
                    const char *backing_format)
{
  size_t cs = q->cluster_size, n = backing ? strlen (backing) : 0, used;
  CLEANUP_FREE uint8_t *b = calloc (1, cs);

  if (b == NULL)
    return error_file (q->img, ENOMEM, "out of memory");
  memcpy (b, q->header_raw, q->h.header_length);
  used = 0;
  if (n <= QCOW2_MAX_BACKING_NAME && q->h.header_length + n < cs)
    used = qcow2_encode_extensions (b + q->h.header_length,
                                    cs - q->h.header_length - n,
                                    n ? backing_format : NULL, q->exts,
                                    q->nr_exts, q->h.version >= 3);
  if (used == 0)
    return error_file (q->img, EINVAL, "the backing file name and the "
                       "header extensions do not fit in the header cluster "
                       "(%zu bytes)", cs);
  if (n)
    memcpy (b + q->h.header_length + used, backing, n);
  return write_header_cluster (q, b, n ? q->h.header_length + used : 0, n);
}

/* The dirty bit is the 8 bytes of incompatible features at 72. */
static int
write_incompatible (void *fmt)
{
  return qcow2_write_header_fields (fmt, 72, 8);
}

int
qcow2_set_dirty (struct qcow2 *q, bool on)
{
  return cow_set_mark (&q->cow, on,
                       q->h.version >= 3 ? &q->h.incompatible_features
                                         : NULL,
                       QCOW2_INCOMPAT_DIRTY, write_incompatible);
}

int
qcow2_clear_corrupt (struct qcow2 *q)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->header_lock);

  if (!(q->h.incompatible_features & QCOW2_INCOMPAT_CORRUPT))
    return 0;
  q->h.incompatible_features &= ~QCOW2_INCOMPAT_CORRUPT;
  if (write_incompatible (q) == -1)
    return -1;
  __atomic_store_n (&q->corrupt, false, __ATOMIC_RELEASE);
  return 0;
}

const char *
qcow2_geometry_error (unsigned cluster_bits, unsigned refcount_order)
{
  if (cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
      cluster_bits > QCOW2_MAX_CLUSTER_BITS)
    return "cluster_size must be a power of two from 512 to 2097152";
  if (refcount_order > 6)
    return "refcount_bits must be a power of two from 1 to 64";
  return NULL;
}

uint64_t
qcow2_l1_entries_for (uint64_t size, unsigned cluster_bits, unsigned l2_bits)
{
  uint64_t clusters = DIV_ROUND_UP (size, (uint64_t) 1 << cluster_bits);
  return DIV_ROUND_UP (clusters, (uint64_t) 1 << l2_bits);
}

/* The name the image's feature name table gives an incompatible bit. */
static void
feature_name (struct qcow2 *q, unsigned bit, char *name, size_t len)
{
  size_t i;

  snprintf (name, len, "bit %u", bit);
  for (i = 0; i + 48 <= q->feature_table_len; i += 48) {
    const uint8_t *e = q->feature_table + i;
    if (e[0] == 0 && e[1] == bit) {
      char n[47];
      size_t k;
      memcpy (n, e + 2, 46);
      n[46] = '\0';
      for (k = 0; n[k]; k++)
        if (n[k] < 0x20 || n[k] > 0x7e)
          n[k] = '?';
      snprintf (name, len, "'%s' (bit %u)", n, bit);
      return;
    }
  }
}

/* Validates the fixed header, sets the geometry. */
static int
validate_header (struct qcow2 *q, uint64_t file_size)
{
  struct image *img = q->img;
  struct qcow2_header *h = &q->h;
  const char *msg;

  if (h->magic != QCOW2_MAGIC)
    return error_file (img, EINVAL, "bad magic: not a qcow2 image");
  if (h->version != 2 && h->version != 3)
    return error_file (img, ENOTSUP, "unsupported qcow2 version %" PRIu32,
                       h->version);
  msg = qcow2_geometry_error (h->cluster_bits, h->refcount_order);
  if (msg)
    return error_file (img, EINVAL, "invalid header: %s (cluster_bits %"
                       PRIu32 ", refcount_order %" PRIu32 ")", msg,
                       h->cluster_bits, h->refcount_order);
  q->cluster_bits = h->cluster_bits;
  q->cow.cluster_bits = q->cluster_bits;
  q->cluster_size = 1ULL << h->cluster_bits;
  if (h->version >= 3 &&
      (h->header_length < QCOW2_V3_HEADER_BYTES || h->header_length % 8 ||
       h->header_length > q->cluster_size))
    return error_file (img, EINVAL, "invalid header: header_length %" PRIu32
                       " (a multiple of 8 from 104 to the cluster size)",
                       h->header_length);
  if (file_size < h->header_length)
    return error_file (img, EINVAL, "truncated header (%" PRIu64 " bytes; "
                       "the header has %" PRIu32 ")", file_size,
                       h->header_length);
  if (h->crypt_method != 0)
    return error_file (img, ENOTSUP, "encrypted images are not supported "
                       "(crypt_method %" PRIu32 ")", h->crypt_method);
  if (h->size > INT64_MAX)
    return error_file (img, EINVAL, "invalid header: size %" PRIu64
                       " is too large", h->size);
  return 0;
}

/* Features: unknown incompatible bits refuse the open, known ones are
 * supported, read-only, or refused, each with its name. */
static int
check_features (struct qcow2 *q, const struct image_open_opts *opts)
{
  struct image *img = q->img;
  uint64_t inc = q->h.incompatible_features, unknown;
  bool rw = !img->readonly;
  char name[80];

  unknown = inc & ~QCOW2_INCOMPAT_KNOWN;
  if (unknown) {
    feature_name (q, (unsigned) __builtin_ctzll (unknown), name,
                  sizeof name);
    return error_file (img, ENOTSUP, "unsupported incompatible feature %s",
                       name);
  }
  if (inc & QCOW2_INCOMPAT_DATA_FILE)
    return error_file (img, ENOTSUP, "unsupported incompatible feature: "
                       "external data file%s%s", q->data_file ? " " : "",
                       q->data_file ? q->data_file : "");
  if (!!(inc & QCOW2_INCOMPAT_COMPRESSION) != (q->h.compression_type != 0))
    return error_file (img, EINVAL, "invalid header: compression type bit "
                       "and compression_type %u disagree",
                       q->h.compression_type);
  if (q->h.compression_type > QCOW2_COMPRESSION_ZSTD)
    return error_file (img, ENOTSUP, "unsupported compression type %u",
                       q->h.compression_type);
#ifndef HAVE_ZSTD
  if (q->h.compression_type == QCOW2_COMPRESSION_ZSTD)
    return error_file (img, ENOTSUP, "compression type zstd: this program "
                       "was built without libzstd");
#endif
  if ((inc & QCOW2_INCOMPAT_EXTL2) && q->cluster_bits < 14)
    return error_file (img, EINVAL, "invalid header: extended L2 entries "
                       "need clusters of 16 KiB at least");
  if ((inc & QCOW2_INCOMPAT_EXTL2) && rw)
    return error_file (img, EROFS, "extended L2 entries (subclusters) are "
                       "supported read-only: open the image read-only");
  if (q->has_bitmaps && rw)
    return error_file (img, EROFS, "persistent dirty bitmaps are supported "
                       "read-only: open the image read-only, or remove "
                       "them with qemu-img bitmap --remove");
  if ((inc & QCOW2_INCOMPAT_CORRUPT) && rw &&
      !(opts->flags & IMAGE_OPEN_NO_REPAIR))
    return error_file (img, EROFS, "the image is marked corrupt: open it "
                       "read-only, or repair it with cowbd-img check -r all");
  return 0;
}

/* A string extension: no NUL inside, at most max bytes. */
static int
ext_string (struct qcow2 *q, const uint8_t *data, uint32_t len,
            const char *what, char **out)
{
  if (len > QCOW2_MAX_EXTENSION_STRING || memchr (data, 0, len))
    return error_file (q->img, EINVAL, "invalid header: the %s extension "
                       "(%" PRIu32 " bytes) is too long or holds a NUL",
                       what, len);
  free (*out);
  *out = strndup ((const char *) data, len);
  if (*out == NULL)
    return error_file (q->img, ENOMEM, "out of memory");
  return 0;
}

static int
keep_ext (struct qcow2 *q, uint32_t type, const uint8_t *data, uint32_t len)
{
  struct qcow2_ext *n = realloc (q->exts, (q->nr_exts + 1) * sizeof *n);

  if (n == NULL)
    return error_file (q->img, ENOMEM, "out of memory");
  q->exts = n;
  n[q->nr_exts].type = type;
  n[q->nr_exts].len = len;
  n[q->nr_exts].data = malloc (len ? len : 1);
  if (n[q->nr_exts].data == NULL)
    return error_file (q->img, ENOMEM, "out of memory");
  memcpy (n[q->nr_exts].data, data, len);
  q->nr_exts++;
  return 0;
}

static int
one_extension (struct qcow2 *q, uint32_t type, const uint8_t *d,
               uint32_t len)
{
  switch (type) {
  case QCOW2_EXT_BACKING_FORMAT:
    q->backing_format_stored = true;
    return ext_string (q, d, len, "backing format", &q->img->backing_format);
  case QCOW2_EXT_FEATURE_TABLE:
    free (q->feature_table);
    q->feature_table = malloc (len ? len : 1);
    if (q->feature_table == NULL)
      return error_file (q->img, ENOMEM, "out of memory");
    memcpy (q->feature_table, d, len);
    q->feature_table_len = len;
    return 0;
  case QCOW2_EXT_DATA_FILE:
    if (ext_string (q, d, len, "data file", &q->data_file) == -1)
      return -1;
    break;
  case QCOW2_EXT_BITMAPS:
    if (len < 24)
      return error_file (q->img, EINVAL, "invalid header: bitmaps "
                         "extension of %" PRIu32 " bytes", len);
    q->has_bitmaps = true;
    q->nb_bitmaps = be32_load (d);
    q->bitmap_dir_size = be64_load (d + 8);
    q->bitmap_dir_offset = be64_load (d + 16);
    break;
  }
  /* Everything else is kept as it is, to be written back. */
  return keep_ext (q, type, d, len);
}

/* Walks the header extensions of the first cluster b. */
static int
read_extensions (struct qcow2 *q, const uint8_t *b)
{
  uint64_t off = q->h.header_length;
  uint64_t end = q->h.backing_file_offset ? q->h.backing_file_offset
                                          : q->cluster_size;

  if (end > q->cluster_size || end < off)
    return error_file (q->img, EINVAL, "invalid header: backing file name "
                       "offset %" PRIu64 " lies outside the header cluster "
                       "or inside the header", q->h.backing_file_offset);
  while (off + 8 <= end) {
    uint32_t type = be32_load (b + off), len = be32_load (b + off + 4);
    uint64_t padded;

    if (type == QCOW2_EXT_END)
      return 0;
    padded = ROUND_UP ((uint64_t) len, 8);
    if (padded > end - off - 8)
      return error_file (q->img, EINVAL, "header extension 0x%08" PRIx32
                         " at offset %" PRIu64 ": its length %" PRIu32
                         " overflows the header", type, off, len);
    if (one_extension (q, type, b + off + 8, len) == -1)
      return -1;
    off += 8 + padded;
  }
  return 0;
}

static int
read_backing_name (struct qcow2 *q, const uint8_t *b)
{
  uint64_t o = q->h.backing_file_offset, n = q->h.backing_file_size;
  struct image *img = q->img;

  if (o == 0)
    return 0;
  if (n == 0 || n > QCOW2_MAX_BACKING_NAME ||
      RANGE_OUTSIDE (o, n, q->cluster_size))
    return error_file (img, EINVAL, "invalid header: backing file name (%"
                       PRIu64 " bytes at offset %" PRIu64 ") is empty, "
                       "longer than 1023 bytes or outside the header",
                       n, o);
  if (memchr (b + o, 0, n))
    return error_file (img, EINVAL, "invalid header: backing file name "
                       "contains a NUL byte");
  img->backing_filename = strndup ((const char *) b + o, n);
  if (img->backing_filename == NULL)
    return error_file (img, ENOMEM, "out of memory");
  return 0;
}

/* A table at offset of bytes length: aligned and inside the file. */
static int
check_table (struct qcow2 *q, const char *what, uint64_t offset,
             uint64_t length, uint64_t file_size)
{
  if (!IS_ALIGNED (offset, q->cluster_size) || offset == 0)
    return error_file (q->img, EINVAL, "%s at 0x%" PRIx64 " is not aligned "
                       "to a cluster, or overlaps the header", what, offset);
  if (RANGE_OUTSIDE (offset, length, file_size))
    return error_file (q->img, EINVAL, "%s at 0x%" PRIx64 " (%" PRIu64
                       " bytes) lies past end of file", what, offset,
                       length);
  return 0;
}

/* Geometry from the header, and the L1 and refcount tables read in. */
static int
load_tables (struct qcow2 *q, uint64_t file_size)
{
  struct image *img = q->img;
  struct qcow2_header *h = &q->h;
  uint64_t l1_bytes = (uint64_t) h->l1_size * 8, rt_bytes, need;

  q->extended_l2 = h->incompatible_features & QCOW2_INCOMPAT_EXTL2;
  q->l2_entry_bytes = q->extended_l2 ? 16 : 8;
  q->l2_bits = q->cluster_bits - (q->extended_l2 ? 4 : 3);
  q->cow.table_bits = q->l2_bits;
  q->l2_entries = 1ULL << q->l2_bits;
  q->subcluster_size = q->extended_l2 ? q->cluster_size / 32
                                      : q->cluster_size;
  q->refcount_bits = 1U << h->refcount_order;
  q->rb_bits = q->cluster_bits + 3 - h->refcount_order;
  q->refcount_max = q->refcount_bits == 64 ? UINT64_MAX
                    : (1ULL << q->refcount_bits) - 1;
  q->csize_shift = 62 - (q->cluster_bits - 8);
  q->csize_mask = (1ULL << (q->cluster_bits - 8)) - 1;
  q->coffset_mask = (1ULL << q->csize_shift) - 1;
  q->lazy = h->version >= 3 &&
            (h->compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS);

  if (l1_bytes > QCOW2_MAX_L1_BYTES)
    return error_file (img, EINVAL, "invalid header: l1_size %" PRIu32
                       " is too large (at most %llu entries)", h->l1_size,
                       QCOW2_MAX_L1_BYTES / 8);
  need = qcow2_l1_entries_for (h->size, q->cluster_bits, q->l2_bits);
  if (need > h->l1_size)
    return error_file (img, EINVAL, "invalid header: l1_size %" PRIu32
                       " is too small for size %" PRIu64 " (%" PRIu64
                       " entries needed)", h->l1_size, h->size, need);
  if (h->l1_size && check_table (q, "L1 table", h->l1_table_offset, l1_bytes,
                                 file_size) == -1)
    return -1;
  rt_bytes = (uint64_t) h->refcount_table_clusters << q->cluster_bits;
  if (rt_bytes == 0 || rt_bytes > QCOW2_MAX_REFTABLE_BYTES)
    return error_file (img, EINVAL, "invalid header: refcount table of %"
                       PRIu32 " clusters (1 to %llu bytes)",
                       h->refcount_table_clusters,
                       QCOW2_MAX_REFTABLE_BYTES);
  if (check_table (q, "refcount table", h->refcount_table_offset, rt_bytes,
                   file_size) == -1)
    return -1;

  if (mc_table_init (&q->cow.l1, h->l1_table_offset,
                     MAX (l1_bytes, (uint64_t) 8)) == -1 ||
      mc_table_init (&q->reftable, h->refcount_table_offset, rt_bytes) == -1)
    return error_file (img, ENOMEM, "out of memory for the tables");
  q->cow.l1.bytes = l1_bytes;
  q->reftable_entries = rt_bytes / 8;
  if (source_pread (img->src, q->cow.l1.data, l1_bytes,
                    h->l1_table_offset) == -1)
    return error_syscall (img, "reading the L1 table");
  if (source_pread (img->src, q->reftable.data, rt_bytes,
                  h->refcount_table_offset) == -1)
    return error_syscall (img, "reading the refcount table");
  return 0;
}

/* Where the metadata lies, for the overlap checks (cow.c): the header,
 * the L1 and refcount tables, every refcount block and L2 table they
 * name, the snapshot table and the snapshots' L1 tables.  Entries that
 * are not valid offsets are added all the same: nothing may be written
 * there either. */
static int
map_metadata (struct qcow2 *q)
{
  struct overlap_set *m = &q->cow.meta;
  uint64_t cs = q->cluster_size, i, e;
  int r = 0;

  r |= overlap_add (m, 0, cs, "header");
  r |= overlap_add (m, q->h.l1_table_offset, q->cow.l1.bytes, "L1 table");
  r |= overlap_add (m, q->h.refcount_table_offset, q->reftable_entries * 8,
                    "refcount table");
  for (i = 0; i < q->reftable_entries; i++)
    if ((e = be64_load (q->reftable.data + i * 8) & ~QCOW2_REFT_RESERVED))
      r |= overlap_add (m, e, cs, "refcount block");
  for (i = 0; i < q->h.l1_size; i++)
    if ((e = cow_l1_get (&q->cow, i) & QCOW2_OFFSET_MASK))
      r |= overlap_add (m, e, cs, "L2 table");
  r |= overlap_add (m, q->h.snapshots_offset, q->snapshots_size,
                    "snapshot table");
  for (i = 0; i < q->h.nb_snapshots; i++)
    r |= overlap_add (m, q->snapshots[i].l1_table_offset,
                      (uint64_t) q->snapshots[i].l1_size * 8,
                      "snapshot's L1 table");
  if (r)
    return error_file (q->img, ENOMEM, "out of memory");
  return 0;
}

/* ---- open and close ----------------------------------------------------- */

/* cow_ops' release. */
void
qcow2_release (void *fmt)
{
  struct qcow2 *q = fmt;
  size_t i;

  mc_free (q->rb_cache);
  mc_table_release (&q->reftable);
  for (i = 0; i < q->nr_exts; i++)
    free (q->exts[i].data);
  free (q->exts);
  free (q->data_file);
  free (q->feature_table);
  free (q->header_raw);
  free (q->frees);
  qcow2_free_snapshots (q);
  qcow2_zcache_free (q);
  cow_destroy (&q->cow);
  free (q);
}

/* Reads and validates cluster 0: header, extensions, backing name. */
static int
read_header (struct qcow2 *q, uint64_t file_size)
{
  struct image *img = q->img;
  uint8_t first[QCOW2_V3_HEADER_BYTES] = { 0 };
  uint32_t cluster_bits;

  if (file_size < QCOW2_V2_HEADER_BYTES)
    return error_file (img, EINVAL, "truncated header (%" PRIu64 " bytes; "
                       "a qcow2 header has 72 at least)", file_size);
  if (source_pread (img->src, first, sizeof first, 0) == -1)
    return error_syscall (img, "reading the header");
  if (be32_load (first) != QCOW2_MAGIC)
    return error_file (img, EINVAL, "bad magic: not a qcow2 image");
  cluster_bits = be32_load (first + 20);
  if (cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
      cluster_bits > QCOW2_MAX_CLUSTER_BITS)
    return error_file (img, EINVAL, "invalid header: cluster_bits %" PRIu32
                       " (9 to 21)", cluster_bits);
  q->header_raw = calloc (1, (size_t) 1 << cluster_bits);
  if (q->header_raw == NULL)
    return error_file (img, ENOMEM, "out of memory");
  if (source_pread (img->src, q->header_raw, (size_t) 1 << cluster_bits, 0)
      == -1)
    return error_syscall (img, "reading the header");
  header_decode (q->header_raw, &q->h);
  if (validate_header (q, file_size) == -1 ||
      read_extensions (q, q->header_raw) == -1 ||
      read_backing_name (q, q->header_raw) == -1)
    return -1;
  img->size = q->h.size;
  return 0;
}

/* A writer needs every refcount block it may update to be where the
 * refcount table says: refuse a read-write open of a clean image
 * otherwise, before anything is written (a dirty image's repair, or the
 * check, rebuilds them). */
static int
check_reftable (struct qcow2 *q, uint64_t file_size)
{
  uint64_t i, end = ROUND_UP (file_size, q->cluster_size);

  for (i = 0; i < q->reftable_entries; i++) {
    uint64_t e = be64_load (q->reftable.data + i * 8);
    const char *why = e ? qcow2_reft_entry_error (q, e, end) : NULL;
    if (why)
      return error_file (q->img, EINVAL, "refcount table entry %" PRIu64
                         " (0x%" PRIx64 ") is invalid: %s: run cowbd-img "
                         "check -r all", i, e, why);
  }
  return 0;
}

/* What a read-write open checks and writes before anything else (before
 * the repair of a dirty image, cow_open): a clean image's refcount table,
 * and unknown autoclear bits cleared. */
static int
open_for_writing (struct qcow2 *q, const struct image_open_opts *opts,
                  uint64_t file_size)
{
  bool dirty = q->h.incompatible_features & QCOW2_INCOMPAT_DIRTY;

  if (!dirty && !(opts->flags & IMAGE_OPEN_NO_REPAIR) &&
      check_reftable (q, file_size) == -1)
    return -1;
  if (!q->h.autoclear_features)
    return 0;
  q->h.autoclear_features = 0;
  return qcow2_write_header_fields (q, 88, 8);
}

/* cow_ops' open. */
int
qcow2_open_op (void *fmt, const struct image_open_opts *opts,
               uint64_t file_size)
{
  struct qcow2 *q = fmt;
  uint64_t cache = opts->cache_size ? opts->cache_size
                                    : MC_DEFAULT_CACHE_SIZE;

  q->img = q->cow.img;
  q->cow.big_endian = true;
  cow_init_header_lock (&q->cow, &q->header_lock);
  pthread_mutex_init (&q->zc.lock, NULL);
  q->holes_read_zero = -1;
  if (read_header (q, file_size) == -1 || check_features (q, opts) == -1 ||
      load_tables (q, file_size) == -1 ||
      qcow2_read_snapshots (q, file_size) == -1 ||
      map_metadata (q) == -1 ||
      qcow2_zcache_init (q) == -1)
    return -1;
  q->cow.marked = q->h.incompatible_features & QCOW2_INCOMPAT_DIRTY;
  q->corrupt = q->h.incompatible_features & QCOW2_INCOMPAT_CORRUPT;
  /* img->data_start stays 0: the parts of new clusters that nothing wrote
   * are holes, anywhere in the file (and qemu leaves table clusters
   * sparse), so every byte counts for hole tracking. */
  if (cow_open_state (&q->cow, opts, q->cluster_size, file_size) == -1)
    return -1;
  q->rb_cache = mc_new (q->cluster_size, cache / 4, 4);
  if (q->rb_cache == NULL)
    return error_file (q->img, ENOMEM, "out of memory");
  q->compressed_end = ROUND_UP (file_size, 512);
  return q->img->readonly ? 0 : open_for_writing (q, opts, file_size);
}

static int
qcow2_open (struct image *img, const struct image_open_opts *opts)
{
  return cow_open (img, opts, sizeof (struct qcow2), &qcow2_cow_ops);
}

/* cow_ops' write_back_all: everything written back, refcount blocks
 * included, and the dropped references applied and written too. */
int
qcow2_write_back_all (void *fmt)
{
  struct qcow2 *q = fmt;

  if (qcow2_writeback (q, true) == -1 || qcow2_writeback (q, true) == -1)
    return -1;
  return 0;
}

/* cow_ops' set_mark. */
int
qcow2_set_mark (void *fmt, bool on)
{
  return qcow2_set_dirty (fmt, on);
}

static int
qcow2_flush (struct image *img)
{
  return qcow2_writeback (img->priv, false);
}

static void
qcow2_cache_stats (struct image *img, struct image_stats *st)
{
  struct qcow2 *q = img->priv;

  cow_add_cache_stats (q->cow.l2_cache, st);
  cow_add_cache_stats (q->rb_cache, st);
}

static void
qcow2_get_info (struct image *img, struct drv_info *di)
{
  struct qcow2 *q = img->priv;
  uint64_t inc;

  pthread_mutex_lock (&q->header_lock);
  inc = q->h.incompatible_features;
  pthread_mutex_unlock (&q->header_lock);
  di->cluster_size = (uint32_t) q->cluster_size;
  di->dirty = inc & QCOW2_INCOMPAT_DIRTY;
  di->specific.kind = IMAGE_INFO_QCOW2;
  di->specific.qcow2 = (struct image_info_qcow2) {
    .compat = q->h.version >= 3 ? "1.1" : "0.10",
    .lazy_refcounts = q->h.compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS,
    .refcount_bits = q->refcount_bits,
    .corrupt = inc & QCOW2_INCOMPAT_CORRUPT,
    .nb_snapshots = q->h.nb_snapshots,
    .compression_type = q->h.compression_type == QCOW2_COMPRESSION_ZSTD
                        ? "zstd" : "zlib",
    .extended_l2 = q->extended_l2,
    .data_file = q->data_file,
  };
}

/* ---- header changes ----------------------------------------------------- */

static int
qcow2_set_backing (struct image *img, const char *backing_file,
                   const char *backing_format)
{
  struct qcow2 *q = img->priv;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->header_lock);

  if (backing_file && backing_file[0] == '\0')
    backing_file = NULL;
  if (backing_file && strlen (backing_file) > QCOW2_MAX_BACKING_NAME)
    return error_file (img, EINVAL, "backing file name longer than %d "
                       "bytes", QCOW2_MAX_BACKING_NAME);
  /* On failure the header fields are as they were. */
  return qcow2_write_header (q, backing_file, backing_format);
}

/* Empties the L1 table of the active layer and drops the references its
 * tables held; the L1 table is written, not yet synced. */
static int
drop_active_tables (struct qcow2 *q)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);
  uint64_t i;

  assert (q->cow.allocs == NULL);
  for (i = 0; i < q->h.l1_size; i++) {
    uint64_t e = cow_l1_get (&q->cow, i);
    if ((e & QCOW2_OFFSET_MASK) == 0)
      continue;
    /* A malformed entry holds nothing we can trust: only cleared. */
    if (qcow2_l1_entry_error (q, e, q->cow.file_end) == NULL &&
        qcow2_drop_l2_table (q, e & QCOW2_OFFSET_MASK) == -1)
      return -1;
    cow_l1_set (&q->cow, i, 0);
  }
  return cow_write_table_pages (&q->cow, &q->cow.l1);
}

/* Drops every L2 table of the active layer, so that the whole image reads
 * from its backing file again.  The caller has the image to itself
 * (commit).  Order: the emptied L1 table is durable before a reference
 * is dropped (qcow2_writeback applies the drops after its syncs). */
static int
qcow2_make_empty (struct image *img)
{
  struct qcow2 *q = img->priv;

  if (qcow2_writeback (q, true) == -1 || qcow2_set_dirty (q, true) == -1)
    return -1;
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.writeback_lock);
    if (drop_active_tables (q) == -1 || cow_fdatasync (&q->cow) == -1)
      return -1;
  }
  if (qcow2_write_back_all (q) == -1 || cow_cut_and_sync (&q->cow) == -1)
    return -1;
  /* The emptied tables and the lowered counts are durable: the freed end
   * of the file may go. */
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.writeback_lock);
  return qcow2_truncate_free_tail (q);
}

const struct driver qcow2_driver = {
  COW_DRIVER (qcow2),
  .refine_host_holes = true,    /* as qemu: unwritten parts of clusters
                                   are holes that read as zeros */
  .list_snapshots = qcow2_list_snapshots,
  .snapshot_create = qcow2_snapshot_create,
  .snapshot_apply = qcow2_snapshot_apply,
  .snapshot_delete = qcow2_snapshot_delete,
  .amend = qcow2_amend,
  .write_compressed = qcow2_write_compressed,
};
