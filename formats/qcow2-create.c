/* SPDX-License-Identifier: BSD-3-Clause */
/* Creating qcow2 images, and the header extensions we write.
 *
 * A new image, the layout qemu-img uses:
 *
 *   cluster 0            header, extensions, backing file name
 *   then                 the refcount table, the refcount blocks, the L1
 *                        table (one cluster each for any image below a
 *                        few TiB with the defaults)
 *   preallocation only   every L2 table and every data cluster, mapped in
 *                        guest order (COPIED, refcount 1)
 *
 * Without preallocation that is four clusters whatever the size: cloning
 * a golden image is constant time.  The refcount structure is sized to
 * count everything the file holds, itself included (a fixed point,
 * computed below), and written block by block.
 *
 * Defaults (as the issue asks, and unlike qemu-img's lazy_refcounts=off):
 * compat=1.1, lazy_refcounts=on, cluster_size=64K, refcount_bits=16.
 *
 * Preallocation: metadata maps every cluster over a sparse file; falloc
 * also reserves the data clusters' blocks; full also writes zeros over
 * them.  falloc and full report progress and can be cancelled, and
 * image_create then removes the file.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "byte-swapping.h"
#include "cleanup.h"
#include "minmax.h"
#include "qcow2.h"
#include "rounding.h"

/* ---- header extensions ------------------------------------------------- */

static const struct {
  uint8_t type, bit;
  const char *name;
} features[] = {
  { 0, 0, "dirty bit" },
  { 0, 1, "corrupt bit" },
  { 0, 2, "external data file" },
  { 0, 3, "compression type" },
  { 0, 4, "extended L2 entries" },
  { 1, 0, "lazy refcounts" },
  { 2, 0, "bitmaps" },
  { 2, 1, "raw external data" },
};
#define NR_FEATURES (sizeof features / sizeof features[0])

/* Appends one extension at *pos if it fits before room. */
static bool
put_ext (uint8_t *b, size_t room, size_t *pos, uint32_t type,
         const void *data, uint32_t len)
{
  size_t need = 8 + ROUND_UP ((size_t) len, 8);

  if (need > room - *pos)
    return false;
  be32_store (b + *pos, type);
  be32_store (b + *pos + 4, len);
  memset (b + *pos + 8, 0, ROUND_UP ((size_t) len, 8));
  memcpy (b + *pos + 8, data, len);
  *pos += need;
  return true;
}

static bool
put_feature_table (uint8_t *b, size_t room, size_t *pos)
{
  uint8_t t[NR_FEATURES * 48];
  size_t i;

  memset (t, 0, sizeof t);
  for (i = 0; i < NR_FEATURES; i++) {
    t[i * 48] = features[i].type;
    t[i * 48 + 1] = features[i].bit;
    memcpy (t + i * 48 + 2, features[i].name, strlen (features[i].name));
  }
  return put_ext (b, room, pos, QCOW2_EXT_FEATURE_TABLE, t, sizeof t);
}

static size_t
encode (uint8_t *b, size_t room, const char *backing_format,
        const struct qcow2_ext *exts, size_t nr_exts, bool feature_table)
{
  size_t pos = 0, i;

  if (room < 8)
    return 0;
  if (backing_format &&
      !put_ext (b, room - 8, &pos, QCOW2_EXT_BACKING_FORMAT, backing_format,
                (uint32_t) strlen (backing_format)))
    return 0;
  if (feature_table && !put_feature_table (b, room - 8, &pos))
    return 0;
  for (i = 0; i < nr_exts; i++)
    if (!put_ext (b, room - 8, &pos, exts[i].type, exts[i].data,
                  exts[i].len))
      return 0;
  memset (b + pos, 0, 8);       /* the end marker */
  return pos + 8;
}

size_t
qcow2_encode_extensions (uint8_t *b, size_t room, const char *backing_format,
                         const struct qcow2_ext *exts, size_t nr_exts,
                         bool feature_table)
{
  size_t n = 0;

  /* The feature name table only helps other programs: left out when the
   * header cluster (512 bytes...) has no room for it. */
  if (feature_table)
    n = encode (b, room, backing_format, exts, nr_exts, true);
  if (n == 0)
    n = encode (b, room, backing_format, exts, nr_exts, false);
  return n;
}

/* ---- options ----------------------------------------------------------- */

struct plan {
  struct qcow2_header h;
  uint64_t cs;
  const char *backing;
  const char *backing_format;   /* stored or probed */
  uint64_t l1_entries, l1_clusters;
  uint64_t rt, rb;              /* refcount table and blocks, clusters */
  uint64_t l2_tables, data_clusters; /* preallocation only */
  uint64_t total;               /* clusters the file holds */
};

/* compression_type: zlib (0, the default) or zstd (1: the header byte
 * and incompatible bit 3, version 3 only, as qemu). */
static int
parse_compression (const char *filename, const char *type, bool v3,
                   struct qcow2_header *h)
{
  if (type == NULL || strcmp (type, "zlib") == 0)
    return 0;
  if (strcmp (type, "zstd") != 0)
    return error_set (EINVAL, "%s: compression_type must be zlib or zstd, "
                      "not '%s'", filename, type);
#ifndef HAVE_ZSTD
  return error_set (ENOTSUP, "%s: compression_type zstd: this program was "
                    "built without libzstd", filename);
#endif
  if (!v3)
    return error_set (EINVAL, "%s: compression_type zstd needs compat=1.1",
                      filename);
  h->compression_type = QCOW2_COMPRESSION_ZSTD;
  h->incompatible_features |= QCOW2_INCOMPAT_COMPRESSION;
  return 0;
}

/* qcow2's own create options (image_option). */
const struct image_option qcow2_create_options[] = {
  { .name = "compat", .type = IMAGE_OPTION_STRING, .amend = true },
  { .name = "lazy_refcounts", .type = IMAGE_OPTION_BOOL, .amend = true },
  { .name = "refcount_bits", .type = IMAGE_OPTION_SIZE },
  { .name = "compression_type", .type = IMAGE_OPTION_STRING },
  { .name = NULL },
};

/* compat: "1.1" (or "v3", the default) or "0.10" (or "v2"). */
static int
parse_compat (const char *filename, const char *compat, bool *v3)
{
  if (compat == NULL || strcmp (compat, "1.1") == 0 ||
      strcmp (compat, "v3") == 0)
    *v3 = true;
  else if (strcmp (compat, "0.10") == 0 || strcmp (compat, "v2") == 0)
    *v3 = false;
  else
    return error_set (EINVAL, "%s: compat must be 0.10 or 1.1, not '%s'",
                      filename, compat);
  return 0;
}

static int
parse_options (const char *filename, const struct image_create_opts *o,
               struct plan *p)
{
  uint32_t cs = o->cluster_size ? o->cluster_size
                                : QCOW2_DEFAULT_CLUSTER_SIZE;
  uint64_t bits = create_opt_number (o, "refcount_bits", 0);
  const struct image_option_value *lazy_v = image_option_find (o,
                                                       "lazy_refcounts");
  int lazy = lazy_v ? lazy_v->number != 0 : -1; /* -1: on for version 3 */
  const char *msg;
  bool v3 = true;

  if (!is_power_of_2 (cs) ||
      (msg = qcow2_geometry_error (log_2_bits (cs), 0)) != NULL)
    return error_set (EINVAL, "%s: cluster_size must be a power of two "
                      "from 512 to 2097152", filename);
  if (parse_compat (filename, create_opt_string (o, "compat"), &v3) == -1)
    return -1;
  if (bits == 0)                /* 0: the default */
    bits = 16;
  if (!is_power_of_2 (bits) || bits > 64)
    return error_set (EINVAL, "%s: refcount_bits must be a power of two "
                      "from 1 to 64", filename);
  if (!v3 && (bits != 16 || lazy > 0))
    return error_set (EINVAL, "%s: lazy_refcounts and refcount_bits other "
                      "than 16 need compat=1.1", filename);
  if (create_refuse_others (filename, &qcow2_driver, o, false) == -1 ||
      parse_compression (filename, create_opt_string (o, "compression_type"),
                         v3, &p->h) == -1)
    return -1;
  p->cs = cs;
  p->h.magic = QCOW2_MAGIC;
  p->h.version = v3 ? 3 : 2;
  p->h.cluster_bits = log_2_bits (cs);
  p->h.refcount_order = log_2_bits (bits);
  p->h.header_length = v3 ? QCOW2_OUR_HEADER_BYTES : QCOW2_V2_HEADER_BYTES;
  if (v3 && lazy != 0)
    p->h.compatible_features = QCOW2_COMPAT_LAZY_REFCOUNTS;
  return 0;
}

/* What the new image says about its backing file. */
static int
inspect_backing (const char *filename, const struct image_create_opts *o,
                 struct plan *p, uint64_t *size)
{
  uint64_t bsize;

  p->backing = o->backing_file;
  if (strlen (p->backing) > QCOW2_MAX_BACKING_NAME)
    return error_set (EINVAL, "%s: backing file name longer than %d bytes",
                      filename, QCOW2_MAX_BACKING_NAME);
  if (o->prealloc != IMAGE_PREALLOC_OFF)
    return error_set (EINVAL, "%s: preallocation and a backing file cannot "
                      "be combined (preallocated clusters would hide the "
                      "backing file)", filename);
  if (create_inspect_backing (filename, o, &bsize, &p->backing_format) == -1)
    return -1;
  if (*size == 0)
    *size = bsize;
  return 0;
}

/* ---- layout ----------------------------------------------------------- */

/* The refcount table and blocks that count the whole file, themselves
 * included. */
static int
size_refcounts (const char *filename, struct plan *p, bool prealloc)
{
  uint64_t entries_per_block = p->cs * 8 / (1U << p->h.refcount_order);
  uint64_t fixed = 1 + p->l1_clusters +
                   (prealloc ? p->l2_tables + p->data_clusters : 0);
  int i;

  p->rt = 1;
  p->rb = 1;
  for (i = 0; i < 64; i++) {
    uint64_t total = fixed + p->rt + p->rb;
    uint64_t rb = DIV_ROUND_UP (total, entries_per_block);
    uint64_t rt = DIV_ROUND_UP (rb * 8, p->cs);
    if (rb == p->rb && rt == p->rt) {
      p->total = total;
      if (p->rt * p->cs > QCOW2_MAX_REFTABLE_BYTES)
        return error_set (EINVAL, "%s: the image is too large for "
                          "cluster_size %" PRIu64 " (its refcount table "
                          "would exceed 8 MiB)", filename, p->cs);
      return 0;
    }
    p->rb = MAX (rb, (uint64_t) 1);
    p->rt = MAX (rt, (uint64_t) 1);
  }
  return error_set (EINVAL, "%s: cannot size the refcount table", filename);
}

static int
plan_layout (const char *filename, struct plan *p, uint64_t size,
             bool prealloc)
{
  unsigned l2_bits = p->h.cluster_bits - 3;

  /* The guest size is kept in whole 512-byte sectors, as qemu-img does. */
  if (!round_up_checked (size, 512, &size) || size > INT64_MAX)
    return error_set (EINVAL, "%s: size %" PRIu64 " is too large", filename,
                      size);
  p->h.size = size;
  p->l1_entries = qcow2_l1_entries_for (size, p->h.cluster_bits, l2_bits);
  if (p->l1_entries * 8 > QCOW2_MAX_L1_BYTES)
    return error_set (EINVAL, "%s: size %" PRIu64 " is too large for "
                      "cluster_size %" PRIu64, filename, size, p->cs);
  p->l1_clusters = MAX (DIV_ROUND_UP (p->l1_entries * 8, p->cs),
                        (uint64_t) 1);
  p->data_clusters = DIV_ROUND_UP (size, p->cs);
  p->l2_tables = p->l1_entries;
  if (size_refcounts (filename, p, prealloc) == -1)
    return -1;
  p->h.l1_size = (uint32_t) p->l1_entries;
  p->h.refcount_table_offset = p->cs;
  p->h.refcount_table_clusters = (uint32_t) p->rt;
  p->h.l1_table_offset = (1 + p->rt + p->rb) * p->cs;
  return 0;
}

/* ---- writing ------------------------------------------------------------ */

static int
write_err (const char *filename, const char *what)
{
  return error_set (errno, "%s: writing the %s: %s", filename, what,
                    strerror (errno));
}

static int
write_header (int fd, const char *filename, struct plan *p)
{
  size_t hl = p->h.header_length, n = p->backing ? strlen (p->backing) : 0;
  CLEANUP_FREE uint8_t *b = calloc (1, p->cs);
  size_t used = 0;

  if (b == NULL)
    return error_set (ENOMEM, "%s: out of memory", filename);
  if (hl + n < p->cs)
    used = qcow2_encode_extensions (b + hl, p->cs - hl - n,
                                    p->backing_format, NULL, 0,
                                    p->h.version >= 3);
  if (used == 0)
    return error_set (EINVAL, "%s: the backing file name does not fit in "
                      "the header cluster", filename);
  if (n) {
    p->h.backing_file_offset = hl + used;
    p->h.backing_file_size = (uint32_t) n;
    memcpy (b + hl + used, p->backing, n);
  }
  qcow2_header_encode (&p->h, b);
  if (host_pwrite (fd, b, p->cs, 0) == -1)
    return write_err (filename, "header");
  return 0;
}

/* The refcount table, and the blocks with a count of 1 for each of the
 * file's clusters. */
static int
write_refcounts (int fd, const char *filename, const struct plan *p)
{
  uint64_t per_block = p->cs * 8 / (1U << p->h.refcount_order), k, i;
  unsigned bits = 1U << p->h.refcount_order;
  uint64_t first_block = (1 + p->rt) * p->cs;
  CLEANUP_FREE uint8_t *b = malloc (p->cs);

  if (b == NULL)
    return error_set (ENOMEM, "%s: out of memory", filename);
  for (k = 0; k < p->rb; k++) {
    memset (b, 0, p->cs);
    for (i = 0; i < per_block && k * per_block + i < p->total; i++) {
      uint64_t bit = i * bits;
      switch (bits) {
      case 64: be64_store (b + i * 8, 1); break;
      case 32: be32_store (b + i * 4, 1); break;
      case 16: be16_store (b + i * 2, 1); break;
      default: b[bit / 8] |= (uint8_t) (1U << (bit % 8)); break;
      }
    }
    if (host_pwrite (fd, b, p->cs, first_block + k * p->cs) == -1)
      return write_err (filename, "refcount blocks");
  }
  for (k = 0; k < p->rt * p->cs / 8; k += p->cs / 8) {
    memset (b, 0, p->cs);
    for (i = 0; i < p->cs / 8 && k + i < p->rb; i++)
      be64_store (b + i * 8, first_block + (k + i) * p->cs);
    if (host_pwrite (fd, b, p->cs, p->cs + k * 8) == -1)
      return write_err (filename, "refcount table");
  }
  return 0;
}

/* The L1 table, and with preallocation the L2 tables mapping every guest
 * cluster in order after them. */
static int
write_mapping (int fd, const char *filename, const struct plan *p,
               bool prealloc, uint64_t *data_start)
{
  uint64_t entries = p->cs / 8, l1_off = p->h.l1_table_offset, t, i;
  uint64_t l2_start = l1_off + p->l1_clusters * p->cs;
  uint64_t data = l2_start + (prealloc ? p->l2_tables * p->cs : 0);
  CLEANUP_FREE uint8_t *l1 = calloc (p->l1_clusters, p->cs);
  CLEANUP_FREE uint8_t *l2 = malloc (p->cs);

  if (l1 == NULL || l2 == NULL)
    return error_set (ENOMEM, "%s: out of memory", filename);
  for (t = 0; prealloc && t < p->l2_tables; t++) {
    uint64_t off = l2_start + t * p->cs;
    memset (l2, 0, p->cs);
    for (i = 0; i < entries && t * entries + i < p->data_clusters; i++)
      be64_store (l2 + i * 8,
                  (data + (t * entries + i) * p->cs) | QCOW2_COPIED);
    be64_store (l1 + t * 8, off | QCOW2_COPIED);
    if (host_pwrite (fd, l2, p->cs, off) == -1)
      return write_err (filename, "L2 tables");
  }
  if (host_pwrite (fd, l1, p->l1_clusters * p->cs, l1_off) == -1)
    return write_err (filename, "L1 table");
  *data_start = data;
  return 0;
}

static int
write_image (int fd, const char *filename, struct plan *p,
             const struct image_create_opts *o)
{
  bool prealloc = o->prealloc != IMAGE_PREALLOC_OFF;
  uint64_t data = 0, data_bytes = prealloc ? p->data_clusters * p->cs : 0;

  if (write_header (fd, filename, p) == -1 ||
      write_refcounts (fd, filename, p) == -1 ||
      write_mapping (fd, filename, p, prealloc, &data) == -1)
    return -1;
  return create_finish (fd, filename, p->total * p->cs, data,
                        data_bytes, o);
}

int
qcow2_create (const char *filename, const struct image_create_opts *opts)
{
  struct plan p = { 0 };
  uint64_t size = opts->size;
  int fd, r;

  if (parse_options (filename, opts, &p) == -1)
    return -1;
  if (opts->backing_file && opts->backing_file[0] &&
      opts->no_backing_check) {
    /* qemu-img create -u: the backing file need not exist. */
    if (size == 0)
      return error_set (EINVAL, "%s: a size is needed when the backing "
                        "file is not opened", filename);
    if (opts->prealloc != IMAGE_PREALLOC_OFF)
      return error_set (EINVAL, "%s: preallocation and a backing file "
                        "cannot be combined", filename);
    if (strlen (opts->backing_file) > QCOW2_MAX_BACKING_NAME)
      return error_set (EINVAL, "%s: backing file name longer than %d "
                        "bytes", filename, QCOW2_MAX_BACKING_NAME);
    p.backing = opts->backing_file;
  }
  else if (opts->backing_file && opts->backing_file[0] &&
           inspect_backing (filename, opts, &p, &size) == -1)
    return -1;
  if (p.backing && opts->backing_format)
    p.backing_format = opts->backing_format;
  if (plan_layout (filename, &p, size,
                   opts->prealloc != IMAGE_PREALLOC_OFF) == -1)
    return -1;

  fd = create_new_file (filename);
  if (fd == -1)
    return -1;
  r = write_image (fd, filename, &p, opts);
  if (close (fd) == -1 && r == 0)
    r = error_set (errno, "%s: close: %s", filename, strerror (errno));
  return r;
}
