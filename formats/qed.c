/* SPDX-License-Identifier: BSD-3-Clause */
/* QED: the driver table, the header (read, validated, written), open and
 * close, NEED_CHECK, information, and the header-changing operations
 * (set_backing, make_empty).  The layout is drawn in qed.h; the I/O paths
 * are in qed-cluster.c, tables and writeback in qed-table.c, the check in
 * qed-check.c and create in qed-create.c.
 *
 * NEED_CHECK: set, durably, before the first change of an open (a cluster
 * appended, an entry changed, a hole punched), cleared only by a clean
 * close once everything is written back.  A read-write open that finds it
 * set runs the check with repair before anything else.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "byte-swapping.h"
#include "checked-overflow.h"
#include "cleanup.h"
#include "header.h"
#include "minmax.h"
#include "qed.h"
#include "rounding.h"

/* ---- the header ---------------------------------------------------------- */

/* Where each header field lies (qed.h draws it). */
#define F(name, at) HDR_FIELD (struct qed_header, name, at)
static const struct hdr_field header_fields[] = {
  F (magic, 0), F (cluster_size, 4), F (table_size, 8), F (header_size, 12),
  F (features, 16), F (compat_features, 24), F (autoclear_features, 32),
  F (l1_table_offset, 40), F (image_size, 48),
  F (backing_filename_offset, 56), F (backing_filename_size, 60),
};
#undef F
#define NR_HEADER_FIELDS (sizeof header_fields / sizeof header_fields[0])

static bool
qed_probe (const uint8_t *buf, size_t len)
{
  return hdr_has_magic (buf, len, HDR_LE, QED_MAGIC);
}

static void
header_decode (const uint8_t *b, struct qed_header *h)
{
  hdr_decode (header_fields, NR_HEADER_FIELDS, HDR_LE, b, h);
}

void
qed_header_encode (const struct qed_header *h, uint8_t *b)
{
  hdr_encode (header_fields, NR_HEADER_FIELDS, HDR_LE, h, b);
}

int
qed_write_header (struct qed *q)
{
  uint8_t b[QED_HEADER_BYTES];

  qed_header_encode (&q->h, b);
  if (source_pwrite (q->img->src, b, sizeof b, 0) == -1 ||
      cow_sync (&q->cow) == -1)
    return error_syscall (q->img, "writing the header");
  return 0;
}

static int
write_header_op (void *fmt)
{
  return qed_write_header (fmt);
}

int
qed_set_need_check (struct qed *q, bool on)
{
  return cow_set_mark (&q->cow, on, &q->h.features,
                       QED_F_NEED_CHECK, write_header_op);
}

/* The largest image a geometry can address: entries^2 * cluster_size,
 * saturating instead of wrapping. */
uint64_t
qed_max_image_size (uint32_t cluster_size, uint32_t table_size)
{
  unsigned cbits = log_2_bits (cluster_size);
  unsigned tbits = log_2_bits ((uint64_t) table_size * cluster_size / 8);

  if (2 * tbits + cbits >= 64)
    return UINT64_MAX;
  return 1ULL << (2 * tbits + cbits);
}

/* Geometry checks shared by open and create: a message naming the field,
 * or NULL. */
const char *
qed_geometry_error (uint64_t cluster_size, uint64_t table_size)
{
  if (!is_power_of_2 (cluster_size) || cluster_size < QED_MIN_CLUSTER_SIZE ||
      cluster_size > QED_MAX_CLUSTER_SIZE)
    return "cluster_size must be a power of two from 4096 to 67108864";
  if (!is_power_of_2 (table_size) || table_size < QED_MIN_TABLE_SIZE ||
      table_size > QED_MAX_TABLE_SIZE)
    return "table_size must be a power of two from 1 to 16 (clusters)";
  return NULL;
}

/* Validates everything in the header that does not need the tables.
 * file_size is the host file's length. */
static int
validate_header (struct qed *q, uint64_t file_size)
{
  struct image *img = q->img;
  struct qed_header *h = &q->h;
  const char *msg;
  uint64_t header_end, unknown;

  if (h->magic != QED_MAGIC)
    return error_file (img, EINVAL, "bad magic: not a QED image");
  msg = qed_geometry_error (h->cluster_size, h->table_size);
  if (msg)
    return error_file (img, EINVAL, "invalid header: %s (cluster_size %"
                       PRIu32 ", table_size %" PRIu32 ")", msg,
                       h->cluster_size, h->table_size);
  unknown = h->features & ~(uint64_t) QED_FEATURE_MASK;
  if (unknown)
    return error_file (img, ENOTSUP, "unknown incompatible feature bits "
                       "0x%" PRIx64 " (this image needs a newer program)",
                       unknown);
  if (h->header_size == 0 ||
      MUL_OVERFLOW ((uint64_t) h->header_size, (uint64_t) h->cluster_size,
                    &header_end) || header_end > file_size)
    return error_file (img, EINVAL, "invalid header: header_size %" PRIu32
                       " clusters does not fit in the file", h->header_size);
  if (h->image_size % 512 != 0)
    return error_file (img, EINVAL, "invalid header: image_size %" PRIu64
                       " is not a multiple of 512", h->image_size);
  if (h->image_size > qed_max_image_size (h->cluster_size, h->table_size) ||
      h->image_size > INT64_MAX)
    return error_file (img, EINVAL, "invalid header: image_size %" PRIu64
                       " is larger than this geometry can address",
                       h->image_size);

  q->cluster_size = h->cluster_size;
  q->cluster_bits = log_2_bits (h->cluster_size);
  q->cow.cluster_bits = q->cluster_bits;
  q->table_bytes = (uint64_t) h->table_size * h->cluster_size;
  q->table_entries = q->table_bytes / 8;
  q->table_bits = log_2_bits (q->table_entries);
  q->cow.table_bits = q->table_bits;
  q->header_end = header_end;

  if (!IS_ALIGNED (h->l1_table_offset, q->cluster_size))
    return error_file (img, EINVAL, "L1 table at 0x%" PRIx64
                       " is not aligned to the cluster size",
                       h->l1_table_offset);
  if (h->l1_table_offset < header_end)
    return error_file (img, EINVAL, "L1 table at 0x%" PRIx64
                       " overlaps the header", h->l1_table_offset);
  if (RANGE_OUTSIDE (h->l1_table_offset, q->table_bytes, file_size))
    return error_file (img, EINVAL, "L1 table at 0x%" PRIx64
                       " lies past end of file", h->l1_table_offset);

  if (h->features & QED_F_BACKING_FILE) {
    uint64_t o = h->backing_filename_offset, n = h->backing_filename_size;
    if (n == 0 || n > QED_MAX_BACKING_NAME || RANGE_OUTSIDE (o, n, header_end))
      return error_file (img, EINVAL, "invalid header: backing file name (%"
                         PRIu64 " bytes at offset %" PRIu64 ") is empty, too "
                         "long or outside the header", n, o);
  }
  return 0;
}

/* The L1 table as read at open: only the pages the read copied
 * (source_pread_sparse) may hold entries that are not zero; the others
 * are skipped, never touched.  The next entry from i on that may be set,
 * or n. */
#define L1_PAGE_ENTRIES (SOURCE_SPARSE_PAGE / 8)

static uint64_t
next_l1_entry (const uint64_t *copied, uint64_t i, uint64_t n)
{
  uint64_t page;

  while (i < n) {
    page = i / L1_PAGE_ENTRIES;
    if (copied[page / 64] & (UINT64_C (1) << (page % 64)))
      return i;
    i = (page + 1) * L1_PAGE_ENTRIES;
  }
  return n;
}

/* Where the metadata lies, for the overlap checks (cow.c): the header,
 * the L1 table and every L2 table it names. */
static int
map_metadata (struct qed *q, const uint64_t *copied)
{
  struct overlap_set *m = &q->cow.meta;
  uint64_t i, off, n = q->table_entries;
  int r = 0;

  r |= overlap_add (m, 0, q->header_end, "header");
  r |= overlap_add (m, q->h.l1_table_offset, q->table_bytes, "L1 table");
  for (i = next_l1_entry (copied, 0, n); i < n;
       i = next_l1_entry (copied, i + 1, n))
    if ((off = cow_l1_get (&q->cow, i)) != 0)
      r |= overlap_add (m, off, q->table_bytes, "L2 table");
  if (r)
    return error_file (q->img, ENOMEM, "out of memory");
  return 0;
}

/* Every L2 table offset in the L1 table must be usable: a hostile or
 * corrupt L1 table is refused at open, with the first bad entry named,
 * rather than found by whichever read reaches it. */
static int
validate_l1 (struct qed *q, uint64_t file_size, const uint64_t *copied)
{
  uint64_t i, n = q->table_entries;

  for (i = next_l1_entry (copied, 0, n); i < n;
       i = next_l1_entry (copied, i + 1, n)) {
    uint64_t off = cow_l1_get (&q->cow, i);
    const char *why;

    if (off == 0 || qed_table_offset_valid (q, off, file_size))
      continue;
    if (!IS_ALIGNED (off, q->cluster_size))
      why = "is not aligned to the cluster size";
    else if (off < q->header_end)
      why = "lies in the header";
    else if (RANGE_OUTSIDE (off, q->table_bytes, file_size))
      why = "lies past end of file";
    else
      why = "overlaps the L1 table";
    return error_file (q->img, EINVAL, "L2 table at 0x%" PRIx64 " (L1 entry %"
                       PRIu64 ") %s", off, i, why);
  }
  return 0;
}

static int
read_backing_name (struct qed *q)
{
  struct image *img = q->img;
  size_t n = q->h.backing_filename_size;
  char *name;

  if (!(q->h.features & QED_F_BACKING_FILE))
    return 0;
  name = malloc (n + 1);
  if (name == NULL)
    return error_file (img, ENOMEM, "out of memory");
  if (source_pread (img->src, name, n, q->h.backing_filename_offset) == -1) {
    free (name);
    return error_syscall (img, "reading the backing file name");
  }
  name[n] = '\0';
  if (strlen (name) != n) {
    free (name);
    return error_file (img, EINVAL, "invalid header: backing file name "
                       "contains a NUL byte");
  }
  img->backing_filename = name;
  /* QED stores no backing format, except "raw, do not probe". */
  if (q->h.features & QED_F_BACKING_FORMAT_NO_PROBE) {
    img->backing_format = strdup ("raw");
    if (img->backing_format == NULL)
      return error_file (img, ENOMEM, "out of memory");
  }
  return 0;
}

/* ---- open and close -------------------------------------------------------- */

/* cow_ops' release. */
void
qed_release (void *fmt)
{
  struct qed *q = fmt;

  cow_destroy (&q->cow);
  free (q);
}

/* Reads and validates the fixed header and the backing file name. */
static int
read_header (struct qed *q, uint64_t file_size)
{
  struct image *img = q->img;
  uint8_t b[QED_HEADER_BYTES];
  size_t n = (size_t) MIN (file_size, (uint64_t) sizeof b);

  if (source_pread (img->src, b, n, 0) == -1)
    return error_syscall (img, "reading the header");
  if (n < sizeof b)
    return error_file (img, EINVAL, "truncated header (%zu bytes; a QED "
                       "header has %d)", n, QED_HEADER_BYTES);
  header_decode (b, &q->h);
  if (validate_header (q, file_size) == -1 || read_backing_name (q) == -1)
    return -1;
  img->size = q->h.image_size;
  q->cow.marked = q->h.features & QED_F_NEED_CHECK;
  return 0;
}

/* Reads the L1 table in and validates it. */
static int
read_l1 (struct qed *q, uint64_t file_size)
{
  size_t pages = DIV_ROUND_UP (q->table_bytes, SOURCE_SPARSE_PAGE);
  uint64_t *copied;
  int r;

  if (mc_table_init (&q->cow.l1, q->h.l1_table_offset, q->table_bytes) == -1)
    return error_file (q->img, ENOMEM, "out of memory for the L1 table");
  copied = calloc (DIV_ROUND_UP (pages, 64), sizeof *copied);
  if (copied == NULL)
    return error_file (q->img, ENOMEM, "out of memory for the L1 table");
  if (source_pread_sparse (q->img->src, q->cow.l1.data, q->table_bytes,
                           q->h.l1_table_offset, copied) == -1)
    r = error_syscall (q->img, "reading the L1 table");
  else
    r = validate_l1 (q, file_size, copied) == -1 ||
      map_metadata (q, copied) == -1 ? -1 : 0;
  free (copied);
  return r;
}

/* What a read-write open writes before anything else (before the
 * repair, cow_open): unknown autoclear bits cleared. */
static int
clear_autoclear (struct qed *q)
{
  if (!(q->h.autoclear_features & ~(uint64_t) QED_AUTOCLEAR_FEATURE_MASK))
    return 0;
  q->h.autoclear_features &= QED_AUTOCLEAR_FEATURE_MASK;
  return qed_write_header (q);
}

/* cow_ops' open. */
int
qed_open_op (void *fmt, const struct image_open_opts *opts,
             uint64_t file_size)
{
  struct qed *q = fmt;

  q->img = q->cow.img;
  cow_init_header_lock (&q->cow, &q->header_lock);
  if (read_header (q, file_size) == -1 || read_l1 (q, file_size) == -1 ||
      cow_open_state (&q->cow, opts, q->table_bytes, file_size) == -1)
    return -1;
  return q->img->readonly ? 0 : clear_autoclear (q);
}

static int
qed_open (struct image *img, const struct image_open_opts *opts)
{
  return cow_open (img, opts, sizeof (struct qed), &qed_cow_ops);
}

/* cow_ops' write_back_all and set_mark. */
int
qed_write_back_all (void *fmt)
{
  return qed_writeback (fmt);
}

int
qed_set_mark (void *fmt, bool on)
{
  return qed_set_need_check (fmt, on);
}

static int
qed_flush (struct image *img)
{
  return qed_writeback (img->priv);
}

static void
qed_cache_stats (struct image *img, struct image_stats *st)
{
  struct qed *q = img->priv;

  cow_add_cache_stats (q->cow.l2_cache, st);
}

static void
qed_get_info (struct image *img, struct drv_info *di)
{
  struct qed *q = img->priv;

  *di = (struct drv_info) {
    .cluster_size = q->h.cluster_size,
    .dirty = q->h.features & QED_F_NEED_CHECK,
    .specific = { .kind = IMAGE_INFO_QED,
                  .qed = { .table_size = q->h.table_size } },
  };
}

/* ---- header changes ------------------------------------------------------ */

static int
qed_set_backing (struct image *img, const char *backing_file,
                 const char *backing_format)
{
  struct qed *q = img->priv;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->header_lock);
  struct qed_header saved = q->h;
  size_t n = backing_file ? strlen (backing_file) : 0;
  uint64_t name_offset = QED_HEADER_BYTES;

  if (n > 0) {
    if (n > QED_MAX_BACKING_NAME || name_offset + n > q->header_end)
      return error_file (img, EINVAL, "backing file name '%s' does not fit "
                         "in the header (%" PRIu64 " bytes)", backing_file,
                         q->header_end - name_offset);
    if (source_pwrite (img->src, backing_file, n, name_offset) == -1 ||
        cow_sync (&q->cow) == -1)
      return error_syscall (img, "writing the backing file name");
    q->h.features |= QED_F_BACKING_FILE;
    q->h.backing_filename_offset = (uint32_t) name_offset;
    q->h.backing_filename_size = (uint32_t) n;
  }
  else {
    q->h.features &= ~(uint64_t) QED_F_BACKING_FILE;
    q->h.backing_filename_offset = q->h.backing_filename_size = 0;
  }
  q->h.features &= ~(uint64_t) QED_F_BACKING_FORMAT_NO_PROBE;
  if (n > 0 && backing_format && strcmp (backing_format, "raw") == 0)
    q->h.features |= QED_F_BACKING_FORMAT_NO_PROBE;
  if (qed_write_header (q) == -1) {
    q->h = saved;
    return -1;
  }
  return 0;
}

/* Drops every L2 table, so that the whole image reads from its backing
 * file again, and gives the space back.  The caller has the image to
 * itself (commit).  Order: the emptied L1 table is durable before the file
 * is truncated (rule 5: no cluster is freed before the table update that
 * freed it). */
/* Empties the L1 table, in memory and in the file (not yet synced). */
static int
clear_l1 (struct qed *q)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);
  struct mc_entry *e;
  uint64_t i;

  assert (q->cow.allocs == NULL);
  for (i = 0; i < q->table_entries; i++)
    if (cow_l1_get (&q->cow, i) != 0 &&
        (e = mc_find (q->cow.l2_cache, cow_l1_get (&q->cow, i))) != NULL)
      mc_remove (q->cow.l2_cache, e);
  memset (q->cow.l1.data, 0, q->table_bytes);
  if (source_pwrite (q->img->src, q->cow.l1.data, q->table_bytes,
                   q->h.l1_table_offset) == -1)
    return error_syscall (q->img, "writing the L1 table");
  mc_table_clean (&q->cow.l1);
  return 0;
}

/* Cuts the file after the L1 table. */
static int
cut_after_l1 (struct qed *q)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);
  uint64_t end = q->h.l1_table_offset + q->table_bytes;

  if (end < q->header_end)
    end = q->header_end;
  if (ftruncate (q->img->fd, (off_t) end) == -1)
    return error_syscall (q->img, "truncate");
  q->cow.file_end = q->cow.file_length = end;
  return 0;
}

static int
qed_make_empty (struct image *img)
{
  struct qed *q = img->priv;

  if (qed_writeback (q) == -1 || qed_set_need_check (q, true) == -1 ||
      clear_l1 (q) == -1)
    return -1;
  if (cow_sync (&q->cow) == -1)
    return error_syscall (img, "writing the L1 table");
  return cut_after_l1 (q);
}

const struct driver qed_driver = { COW_DRIVER (qed) };
