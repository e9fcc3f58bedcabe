/* SPDX-License-Identifier: BSD-3-Clause */
/* Creating QED images.
 *
 * A new image is its header cluster(s) and an empty L1 table: constant
 * time whatever the size, which is what makes a clone cheap.  With a
 * backing file the only extra work is opening the backing image's header
 * (for its size, and to fail early on a missing file).
 *
 * Preallocation (not offered by qemu-img for QED; the format allows it):
 *
 *   metadata  every L2 table written and every cluster mapped, in guest
 *             order after the tables, the file extended sparse over them
 *   falloc    the same, with the data clusters' blocks reserved
 *   full      the same, with zeros written over the data clusters
 *
 * falloc and full work in chunks and report progress; the caller's
 * callback can cancel, and image_create then removes the file.
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
#include "qed.h"
#include "rounding.h"

/* What the new image's header will say about its backing file. */
struct backing_plan {
  const char *name;
  bool raw;
  uint64_t size;
};

static int
inspect_backing (const char *filename, const struct image_create_opts *opts,
                 struct backing_plan *b)
{
  const char *format;

  b->name = opts->backing_file;
  if (strlen (b->name) > QED_MAX_BACKING_NAME)
    return error_set (EINVAL, "%s: backing file name longer than %d bytes",
                      filename, QED_MAX_BACKING_NAME);
  if (create_inspect_backing (filename, opts, &b->size, &format) == -1)
    return -1;
  b->raw = strcmp (format, "raw") == 0;
  return 0;
}

/* Maps every guest cluster, in order, after the L2 tables: writes the L2
 * tables and the L1 table.  Returns the offset of the first data cluster. */
static int
write_metadata (int fd, const char *filename, const struct qed_header *h,
                uint64_t *data_start)
{
  uint64_t cs = h->cluster_size;
  uint64_t table_bytes = (uint64_t) h->table_size * cs;
  uint64_t entries = table_bytes / 8;
  uint64_t nclusters = DIV_ROUND_UP (h->image_size, cs);
  uint64_t ntables = DIV_ROUND_UP (nclusters, entries);
  uint64_t l2_start = h->l1_table_offset + table_bytes;
  uint64_t data = l2_start + ntables * table_bytes, t, i;
  CLEANUP_FREE uint8_t *l1 = calloc (1, table_bytes);
  CLEANUP_FREE uint8_t *l2 = malloc (table_bytes);

  if (l1 == NULL || l2 == NULL)
    return error_set (ENOMEM, "%s: out of memory", filename);
  for (t = 0; t < ntables; t++) {
    uint64_t off = l2_start + t * table_bytes;
    memset (l2, 0, table_bytes);
    for (i = 0; i < entries && t * entries + i < nclusters; i++)
      le64_store (l2 + i * 8, data + (t * entries + i) * cs);
    le64_store (l1 + t * 8, off);
    if (host_pwrite (fd, l2, table_bytes, off) == -1)
      return error_set (errno, "%s: writing L2 tables: %s", filename,
                        strerror (errno));
  }
  if (host_pwrite (fd, l1, table_bytes, h->l1_table_offset) == -1)
    return error_set (errno, "%s: writing the L1 table: %s", filename,
                      strerror (errno));
  *data_start = data;
  return 0;
}

static int
write_image (int fd, const char *filename, const struct qed_header *h,
             const struct backing_plan *b,
             const struct image_create_opts *opts)
{
  uint64_t cs = h->cluster_size;
  uint64_t end = h->l1_table_offset + (uint64_t) h->table_size * cs;
  uint8_t hdr[QED_HEADER_BYTES];
  uint64_t data = 0, data_bytes = 0;

  qed_header_encode (h, hdr);
  if (host_pwrite (fd, hdr, sizeof hdr, 0) == -1 ||
      (b->name && host_pwrite (fd, b->name, strlen (b->name),
                               QED_HEADER_BYTES) == -1))
    return error_set (errno, "%s: writing the header: %s", filename,
                      strerror (errno));
  if (opts->prealloc != IMAGE_PREALLOC_OFF) {
    if (write_metadata (fd, filename, h, &data) == -1)
      return -1;
    data_bytes = DIV_ROUND_UP (h->image_size, cs) * cs;
    end = data + data_bytes;
  }
  return create_finish (fd, filename, end, data, data_bytes, opts);
}

/* QED's own create options (image_option): the L1 and L2 table size. */
const struct image_option qed_create_options[] = {
  { .name = "table_size", .type = IMAGE_OPTION_SIZE },
  { .name = NULL },
};

int
qed_create (const char *filename, const struct image_create_opts *opts)
{
  /* (UINT32_MAX, past any valid size, for a larger number) */
  uint32_t table_size = MIN (create_opt_number (opts, "table_size", 0),
                             UINT32_MAX);
  struct qed_header h = {
    .magic = QED_MAGIC,
    .cluster_size = opts->cluster_size ? opts->cluster_size
                                       : QED_DEFAULT_CLUSTER_SIZE,
    .table_size = table_size ? table_size : QED_DEFAULT_TABLE_SIZE,
    .header_size = 1,
  };
  struct backing_plan b = { 0 };
  const char *msg;
  uint64_t size = opts->size;
  int fd, r;

  msg = qed_geometry_error (h.cluster_size, h.table_size);
  if (msg)
    return error_set (EINVAL, "%s: %s", filename, msg);
  if (create_refuse_others (filename, &qed_driver, opts, false) == -1)
    return -1;
  if (opts->backing_file && opts->backing_file[0]) {
    if (opts->prealloc != IMAGE_PREALLOC_OFF)
      return error_set (EINVAL, "%s: preallocation and a backing file "
                        "cannot be combined (preallocated clusters would "
                        "hide the backing file)", filename);
    if (opts->no_backing_check) {
      if (size == 0)
        return error_set (EINVAL, "%s: a size is needed when the backing "
                          "file is not opened", filename);
      b.name = opts->backing_file;
      b.raw = opts->backing_format &&
              strcmp (opts->backing_format, "raw") == 0;
    }
    else if (inspect_backing (filename, opts, &b) == -1)
      return -1;
    if (size == 0)
      size = b.size;
    h.features |= QED_F_BACKING_FILE;
    if (b.raw)
      h.features |= QED_F_BACKING_FORMAT_NO_PROBE;
    h.backing_filename_offset = QED_HEADER_BYTES;
    h.backing_filename_size = (uint32_t) strlen (b.name);
    h.header_size = (uint32_t) DIV_ROUND_UP (QED_HEADER_BYTES +
                                             (uint64_t) strlen (b.name),
                                             (uint64_t) h.cluster_size);
  }
  /* The guest size is kept in whole 512-byte sectors, as qemu-img does. */
  if (!round_up_checked (size, 512, &size) || size > INT64_MAX ||
      size > qed_max_image_size (h.cluster_size, h.table_size))
    return error_set (EINVAL, "%s: size %" PRIu64 " is too large for "
                      "cluster_size %" PRIu32 " and table_size %" PRIu32,
                      filename, opts->size, h.cluster_size, h.table_size);
  h.image_size = size;
  h.l1_table_offset = (uint64_t) h.header_size * h.cluster_size;

  fd = create_new_file (filename);
  if (fd == -1)
    return -1;
  r = write_image (fd, filename, &h, &b, opts);
  if (close (fd) == -1 && r == 0)
    r = error_set (errno, "%s: close: %s", filename, strerror (errno));
  return r;
}
