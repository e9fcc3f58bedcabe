/* SPDX-License-Identifier: BSD-3-Clause */
/* qcow2 internal snapshots: the snapshot table, read and validated at
 * open, and listed (qcow2_list_snapshots, for snapshot -l and info).
 * The engine serves the active layer only (qcow2-snapshot-ops.c creates,
 * applies and deletes snapshots for cowbd-img).  What it needs from the
 * table is where each snapshot's L1 table lies (the check counts the references those
 * hold) and how many clusters the table itself spans.  A snapshot's data
 * is kept intact by the COPIED rule of the I/O paths, not here.
 *
 * A table entry (big-endian):
 *
 *    0  l1_table_offset  [bytes]       8  l1_size          [entries]
 *   12  id_str_size      [bytes]      14  name_size        [bytes]
 *   16  date_sec, date_nsec           24  vm_clock_nsec
 *   32  vm_state_size    [bytes]      36  extra_data_size  [bytes]
 *   40  extra data, id string, name, padding to a multiple of 8
 *
 * Every length is checked against the file and against caps (qemu's:
 * 65536 snapshots, 1 KiB of extra data, 64 MiB of table) before anything
 * is allocated.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byte-swapping.h"
#include "checked-overflow.h"
#include "qcow2.h"
#include "rounding.h"

#define SNAPSHOT_ENTRY_BYTES 40

void
qcow2_free_snapshots (struct qcow2 *q)
{
  uint32_t i;

  if (q->snapshots == NULL)
    return;
  for (i = 0; i < q->h.nb_snapshots; i++) {
    free (q->snapshots[i].id);
    free (q->snapshots[i].name);
  }
  free (q->snapshots);
  q->snapshots = NULL;
}

static int
bad_entry (struct qcow2 *q, uint32_t i, uint64_t pos, const char *what)
{
  return error_file (q->img, EINVAL, "snapshot table: entry %" PRIu32
                     " at 0x%" PRIx64 ": %s", i, pos, what);
}

/* The extra data qemu writes (big-endian): 0 vm_state_size_large,
 * 8 disk_size, 16 icount; each present if the extra data reaches it. */
static int
read_extra (struct qcow2 *q, struct qcow2_snapshot *sn, uint64_t pos,
            uint32_t extra)
{
  uint8_t x[24] = { 0 };

  if (extra == 0)
    return 0;
  if (host_pread (q->img->fd, x, extra < sizeof x ? extra : sizeof x, pos)
      == -1)
    return error_syscall (q->img, "reading the snapshot table");
  if (extra >= 8)
    sn->vm_state_size = be64_load (x);
  if (extra >= 16)
    sn->disk_size = be64_load (x + 8);
  if (extra >= 24)
    sn->icount = be64_load (x + 16);
  return 0;
}

/* Reads entry i at file offset *pos; advances *pos past it. */
static int
read_entry (struct qcow2 *q, uint32_t i, uint64_t *pos, uint64_t limit,
            uint64_t file_size)
{
  struct qcow2_snapshot *sn = &q->snapshots[i];
  uint8_t e[SNAPSHOT_ENTRY_BYTES];
  uint32_t extra, id_len, name_len;
  uint64_t len, l1_bytes;
  char *strings;

  if (RANGE_OUTSIDE (*pos, (uint64_t) SNAPSHOT_ENTRY_BYTES, limit))
    return bad_entry (q, i, *pos, "lies past end of file or beyond 64 MiB");
  if (source_pread (q->img->src, e, sizeof e, *pos) == -1)
    return error_syscall (q->img, "reading the snapshot table");
  sn->l1_table_offset = be64_load (e);
  sn->l1_size = be32_load (e + 8);
  sn->date_sec = be32_load (e + 16);
  sn->date_nsec = be32_load (e + 20);
  sn->vm_clock_nsec = be64_load (e + 24);
  sn->vm_state_size = be32_load (e + 32);
  sn->icount = UINT64_MAX;
  sn->disk_size = q->h.size;
  id_len = be16_load (e + 12);
  name_len = be16_load (e + 14);
  extra = be32_load (e + 36);
  if (extra > QCOW2_MAX_SNAPSHOT_EXTRA)
    return bad_entry (q, i, *pos, "too much extra data");
  len = SNAPSHOT_ENTRY_BYTES + (uint64_t) extra + id_len + name_len;
  /* The last entry's padding may lie past the end of the file (qemu does
   * not write it). */
  if (RANGE_OUTSIDE (*pos, len, limit))
    return bad_entry (q, i, *pos, "lies past end of file or beyond 64 MiB");
  l1_bytes = (uint64_t) sn->l1_size * 8;
  if (l1_bytes > QCOW2_MAX_L1_BYTES)
    return bad_entry (q, i, *pos, "L1 table too large");
  if (l1_bytes &&
      (!IS_ALIGNED (sn->l1_table_offset, q->cluster_size) ||
       sn->l1_table_offset == 0 ||
       RANGE_OUTSIDE (sn->l1_table_offset, l1_bytes, file_size)))
    return bad_entry (q, i, *pos, "its L1 table is misaligned or lies past "
                      "end of file");
  strings = malloc ((size_t) id_len + name_len + 1);
  if (strings == NULL)
    return error_file (q->img, ENOMEM, "out of memory");
  if (source_pread (q->img->src, strings, (size_t) id_len + name_len,
                  *pos + SNAPSHOT_ENTRY_BYTES + extra) == -1) {
    free (strings);
    return error_syscall (q->img, "reading the snapshot table");
  }
  if (read_extra (q, sn, *pos + SNAPSHOT_ENTRY_BYTES, extra) == -1) {
    free (strings);
    return -1;
  }
  sn->id = strndup (strings, id_len);
  sn->name = strndup (strings + id_len, name_len);
  free (strings);
  if (sn->id == NULL || sn->name == NULL)
    return error_file (q->img, ENOMEM, "out of memory");
  sn->entry_offset = *pos;
  sn->entry_len = (uint32_t) len;
  *pos += ROUND_UP (len, 8);
  return 0;
}

int
qcow2_read_snapshots (struct qcow2 *q, uint64_t file_size)
{
  uint64_t start = q->h.snapshots_offset, pos = start, limit;
  uint32_t i, n = q->h.nb_snapshots;

  if (n == 0)
    return 0;
  if (n > QCOW2_MAX_SNAPSHOTS)
    return error_file (q->img, EINVAL, "snapshot table: %" PRIu32
                       " snapshots (at most %d)", n, QCOW2_MAX_SNAPSHOTS);
  if (!IS_ALIGNED (start, q->cluster_size) || start == 0 ||
      start >= file_size)
    return error_file (q->img, EINVAL, "snapshot table at 0x%" PRIx64
                       " is misaligned or lies past end of file", start);
  limit = file_size;
  if (limit - start > QCOW2_MAX_SNAPSHOTS_BYTES)
    limit = start + QCOW2_MAX_SNAPSHOTS_BYTES;
  q->snapshots = calloc (n, sizeof *q->snapshots);
  if (q->snapshots == NULL)
    return error_file (q->img, ENOMEM, "out of memory");
  for (i = 0; i < n; i++)
    if (read_entry (q, i, &pos, limit, file_size) == -1)
      return -1;
  q->snapshots_size = pos - start;
  return 0;
}

int
qcow2_list_snapshots (struct image *img, image_snapshot_fn fn, void *opaque)
{
  struct qcow2 *q = img->priv;
  uint32_t i;
  int r;

  for (i = 0; i < q->h.nb_snapshots; i++) {
    const struct qcow2_snapshot *sn = &q->snapshots[i];
    struct image_snapshot s = {
      .id = sn->id, .name = sn->name,
      .vm_state_size = sn->vm_state_size,
      .date_sec = sn->date_sec, .date_nsec = sn->date_nsec,
      .vm_clock_nsec = sn->vm_clock_nsec, .icount = sn->icount,
    };
    if ((r = fn (opaque, &s)) != 0)
      return r;
  }
  return 0;
}
