/* SPDX-License-Identifier: BSD-3-Clause */
/* qcow2 internal snapshots created, applied and deleted (cowbd-img
 * snapshot -c, -a, -d), on an image the caller has to itself.
 *
 * A reference count is one per path from an L1 table (the active one and
 * each snapshot's): an L2 table named by two L1 tables counts 2, and so
 * does every cluster it names.  COPIED (bit 63 of L1 and L2 entries) is
 * set exactly where the count is 1 and tells the I/O paths that the
 * cluster may be written in place.
 *
 *   create  +1 on all the active L1 reaches, COPIED cleared there; a copy
 *           of the active L1 in new clusters; a new snapshot table with
 *           the entry appended; the header switched to it.
 *   apply   +1 on all the snapshot's L1 reaches; a new active L1 (the
 *           snapshot's, COPIED cleared) in new clusters; the header
 *           switched to it and to the snapshot's size; -1 on all the old
 *           active L1 reached; COPIED recomputed in the active tables.
 *   delete  a new snapshot table without the entry; the header switched
 *           to it; -1 on all the snapshot's L1 reached; COPIED recomputed.
 *
 * Crash ordering.  The one write that makes the change is the header's
 * (nb_snapshots + snapshots_offset, 12 bytes at 60; or size, l1_size and
 * l1_table_offset, 24 bytes at 24): one write inside the first sector,
 * synced.  The rules that keep a crash on either side of it harmless:
 *
 *   1. The dirty bit is set (and durable) before the first change and
 *      cleared at close: a crash anywhere leaves an image whose next
 *      read-write open rebuilds the counts and COPIED from the tables
 *      the header names (qcow2-check.c), so the snapshot is fully there
 *      or fully absent, never half counted.
 *   2. Counts go up (durably) before anything new points to the clusters
 *      and before COPIED is cleared; COPIED is cleared (durably) before
 *      the header makes a second path exist.  A compat=0.10 image, which
 *      has no dirty bit, is then left by a crash with leaks at worst,
 *      never with a shared cluster marked writable in place.
 *   3. Counts go down only after the header no longer names what held
 *      them (qcow2_drop_ref applies them at the next writeback, after a
 *      sync), so no cluster is freed while anything references it.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "byte-swapping.h"
#include "cleanup.h"
#include "qcow2.h"
#include "rounding.h"

#define ENTRY_BYTES 40          /* fixed part of a snapshot table entry */
#define EXTRA_BYTES 24          /* vm_state_size_large, disk_size, icount */
#define MAX_NAME 255            /* qemu-img keeps 255 bytes of a name */

/* What one L1 slot's walk does; called with q->cow.lock held.  l1e points at
 * the big-endian entry, which the walk may change. */
typedef int (*slot_fn) (struct qcow2 *q, uint8_t *l1e);

/* ---- reference walks ---------------------------------------------------- */

static int
corrupt (struct qcow2 *q, const char *what, uint64_t entry, const char *why)
{
  return error_file (q->img, EIO, "%s 0x%" PRIx64 " is invalid: %s: run "
                     "cowbd-img check -r all", what, entry, why);
}

/* One more reference to every cluster of [off, off + len). */
static int
inc_range (struct qcow2 *q, uint64_t off, uint64_t len)
{
  uint64_t c = off >> q->cluster_bits;
  uint64_t last = (off + len - 1) >> q->cluster_bits;
  uint64_t v;

  for (; c <= last; c++) {
    if (qcow2_get_refcount (q, c, &v) == -1)
      return -1;
    if (v == 0)
      return error_file (q->img, EIO, "cluster 0x%" PRIx64 " is used but "
                         "has no reference count: run cowbd-img check -r "
                         "all", c << q->cluster_bits);
    if (v >= q->refcount_max)
      return error_file (q->img, EFBIG, "cluster 0x%" PRIx64 " would have "
                         "more references than refcount_bits=%u counts",
                         c << q->cluster_bits, q->refcount_bits);
    if (qcow2_set_refcount (q, c, v + 1) == -1)
      return -1;
  }
  return 0;
}

/* The host range an L2 entry holds (length 0: none); -1 if invalid. */
static int
entry_range (struct qcow2 *q, uint64_t v, uint64_t *off, uint64_t *len)
{
  const char *why;

  *len = 0;
  switch (qcow2_entry_kind (q, v, q->cow.file_end, &why)) {
  case Q_COMPRESSED:
    qcow2_compressed_range (q, v, off, len);
    return 0;
  case Q_DATA:
  case Q_ZERO:
    *off = v & QCOW2_OFFSET_MASK;
    *len = *off ? q->cluster_size : 0;
    return 0;
  case Q_INVALID:
    return corrupt (q, "L2 entry", v, why);
  default:
    return 0;
  }
}

static int
inc_table (struct qcow2 *q, uint64_t l2off)
{
  struct mc_entry *l2;
  uint64_t j, v, off, len;

  if (cow_get_l2 (&q->cow, l2off, &l2) == -1)
    return -1;
  for (j = 0; j < q->l2_entries; j++) {
    v = qcow2_l2_get (q, l2, j);
    if (entry_range (q, v, &off, &len) == -1 ||
        (len && inc_range (q, off, len) == -1))
      return -1;
    if (v & QCOW2_COPIED)
      qcow2_l2_set (q, l2, j, v & ~QCOW2_COPIED);
  }
  return 0;
}

/* +1 on the L2 table of a slot and all it names; COPIED cleared on the
 * way (every count reached is now at least 2). */
static int
inc_slot (struct qcow2 *q, uint8_t *l1e)
{
  uint64_t e = be64_load (l1e), off = e & QCOW2_OFFSET_MASK;
  const char *why;

  if (off == 0)
    return 0;
  if ((why = qcow2_l1_entry_error (q, e, q->cow.file_end)) != NULL)
    return corrupt (q, "L1 entry", e, why);
  if (inc_range (q, off, q->cluster_size) == -1 || inc_table (q, off) == -1)
    return -1;
  be64_store (l1e, e & ~QCOW2_COPIED);
  return 0;
}

/* -1 (deferred to the next writeback, rule 3) on the L2 table of a slot
 * and all it names.  A table nothing else names leaves the cache: its
 * cluster is about to be freed. */
static int
drop_slot (struct qcow2 *q, uint8_t *l1e)
{
  uint64_t e = be64_load (l1e), off = e & QCOW2_OFFSET_MASK, j, rc;
  struct mc_entry *l2;

  if (off == 0 || qcow2_l1_entry_error (q, e, q->cow.file_end) != NULL)
    return 0;                   /* nothing held, or nothing to trust */
  if (cow_get_l2 (&q->cow, off, &l2) == -1 ||
      qcow2_get_refcount (q, off >> q->cluster_bits, &rc) == -1)
    return -1;
  for (j = 0; j < q->l2_entries; j++)
    if (qcow2_drop_entry (q, qcow2_l2_get (q, l2, j), true) == -1)
      return -1;
  if (rc == 1)
    mc_remove (q->cow.l2_cache, l2);
  return qcow2_drop_ref (q, off, q->cluster_size, true);
}

/* Sets *v's COPIED bit to whether the count of the cluster at off is 1;
 * returns whether it changed. */
static int
fix_copied (struct qcow2 *q, uint64_t off, uint64_t *v)
{
  uint64_t rc, want;

  if (qcow2_get_refcount (q, off >> q->cluster_bits, &rc) == -1)
    return -1;
  want = rc == 1 ? (*v | QCOW2_COPIED) : (*v & ~QCOW2_COPIED);
  if (want == *v)
    return 0;
  *v = want;
  return 1;
}

/* COPIED made right in a slot of the active L1 and in its L2 table
 * (compressed entries never carry it). */
static int
copied_slot (struct qcow2 *q, uint8_t *l1e)
{
  uint64_t e = be64_load (l1e), off = e & QCOW2_OFFSET_MASK, j, v, o, len;
  struct mc_entry *l2;
  int r;

  if (off == 0 || qcow2_l1_entry_error (q, e, q->cow.file_end) != NULL)
    return 0;
  if (fix_copied (q, off, &e) == -1 || cow_get_l2 (&q->cow, off, &l2) == -1)
    return -1;
  be64_store (l1e, e);
  for (j = 0; j < q->l2_entries; j++) {
    v = qcow2_l2_get (q, l2, j);
    if (entry_range (q, v, &o, &len) == -1)
      return -1;
    if (len == 0 || (v & QCOW2_COMPRESSED))
      continue;
    if ((r = fix_copied (q, o, &v)) == -1)
      return -1;
    if (r)
      qcow2_l2_set (q, l2, j, v);
  }
  return 0;
}

/* Runs fn on each of the n slots of l1, writing the caches back when
 * they grow past their budget.  Called with writeback_lock held. */
static int
walk_l1 (struct qcow2 *q, uint8_t *l1, uint64_t n, slot_fn fn)
{
  uint64_t i;
  bool over;
  int r;

  for (i = 0; i < n; i++) {
    pthread_mutex_lock (&q->cow.lock);
    r = fn (q, l1 + i * 8);
    over = mc_over_budget (q->cow.l2_cache) || mc_over_budget (q->rb_cache);
    pthread_mutex_unlock (&q->cow.lock);
    if (r == -1 || (over && qcow2_writeback_wbl (q, true) == -1))
      return -1;
  }
  return 0;
}

/* Writes the active L1 table whole.  Called with writeback_lock held. */
static int
write_active_l1 (struct qcow2 *q)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);

  mc_table_mark_all (&q->cow.l1);
  return cow_write_table_pages (&q->cow, &q->cow.l1);
}

/* Everything written and synced, refcount blocks included, and the
 * references dropped so far applied and written too.  Called with
 * writeback_lock held. */
static int
settle (struct qcow2 *q)
{
  if (qcow2_writeback_wbl (q, true) == -1 ||
      qcow2_writeback_wbl (q, true) == -1)
    return -1;
  return 0;
}

/* ---- new clusters ------------------------------------------------------- */

/* Writes bytes of buf to new clusters and makes them and their counts
 * durable (rule 2).  Returns the offset or -1.  Called with
 * writeback_lock held. */
static int64_t
write_new (struct qcow2 *q, const void *buf, uint64_t bytes, const char *what)
{
  uint64_t n = DIV_ROUND_UP (bytes, q->cluster_size);
  int64_t off;

  pthread_mutex_lock (&q->cow.lock);
  off = qcow2_reserve_clusters (q, n);
  if (off != -1)
    overlap_add (&q->cow.meta, (uint64_t) off, n * q->cluster_size, what);
  pthread_mutex_unlock (&q->cow.lock);
  if (off == -1)
    return -1;
  if (source_pwrite (q->img->src, buf, bytes, (uint64_t) off) == -1)
    return error_file (q->img, errno, "writing the %s at 0x%" PRIx64 ": %s",
                       what, (uint64_t) off, strerror (errno));
  if (qcow2_write_refblocks (q) == -1 || cow_fdatasync (&q->cow) == -1)
    return -1;
  return off;
}

/* A snapshot's L1 table read in, n entries (zeros past its own size). */
static uint8_t *
read_l1 (struct qcow2 *q, const struct qcow2_snapshot *sn, uint64_t n)
{
  uint8_t *l1 = calloc (n ? n : 1, 8);

  if (l1 == NULL) {
    error_file (q->img, ENOMEM, "out of memory");
    return NULL;
  }
  if (sn->l1_size &&
      source_pread (q->img->src, l1, (size_t) sn->l1_size * 8,
                    sn->l1_table_offset) == -1) {
    error_syscall (q->img, "reading a snapshot's L1 table");
    free (l1);
    return NULL;
  }
  return l1;
}

/* ---- the snapshot table ------------------------------------------------- */

/* The entries kept (all but skip; UINT32_MAX: all), as they are on
 * disk, each padded to 8 bytes, then add (addlen bytes) if any. */
static uint8_t *
build_table (struct qcow2 *q, uint32_t skip, const uint8_t *add,
             size_t addlen, uint64_t *len)
{
  uint64_t total = addlen, pos = 0;
  uint32_t i;
  uint8_t *t;

  for (i = 0; i < q->h.nb_snapshots; i++)
    if (i != skip)
      total += ROUND_UP ((uint64_t) q->snapshots[i].entry_len, 8);
  if (total > QCOW2_MAX_SNAPSHOTS_BYTES) {
    error_file (q->img, EFBIG, "the snapshot table would exceed %llu "
                "bytes", QCOW2_MAX_SNAPSHOTS_BYTES);
    return NULL;
  }
  if ((t = calloc (1, total ? total : 1)) == NULL) {
    error_file (q->img, ENOMEM, "out of memory");
    return NULL;
  }
  for (i = 0; i < q->h.nb_snapshots; i++) {
    const struct qcow2_snapshot *sn = &q->snapshots[i];
    if (i == skip)
      continue;
    if (source_pread (q->img->src, t + pos, sn->entry_len,
                      sn->entry_offset) == -1) {
      error_syscall (q->img, "reading the snapshot table");
      free (t);
      return NULL;
    }
    pos += ROUND_UP ((uint64_t) sn->entry_len, 8);
  }
  if (addlen)
    memcpy (t + pos, add, addlen);
  *len = total;
  return t;
}

/* The next free numeric id, as qemu picks it. */
static void
next_id (struct qcow2 *q, char *id, size_t len)
{
  unsigned long max = 0, v;
  uint32_t i;

  for (i = 0; i < q->h.nb_snapshots; i++)
    if ((v = strtoul (q->snapshots[i].id, NULL, 10)) > max)
      max = v;
  snprintf (id, len, "%lu", max + 1);
}

/* Encodes a new entry for an L1 copy at l1off; returns its length. */
static size_t
encode_entry (struct qcow2 *q, uint8_t *e, uint64_t l1off, const char *id,
              const char *name)
{
  size_t idlen = strlen (id), namelen = strnlen (name, MAX_NAME);
  struct timespec ts;

  clock_gettime (CLOCK_REALTIME, &ts);
  memset (e, 0, ENTRY_BYTES + EXTRA_BYTES);
  be64_store (e, l1off);
  be32_store (e + 8, q->h.l1_size);
  be16_store (e + 12, (uint16_t) idlen);
  be16_store (e + 14, (uint16_t) namelen);
  be32_store (e + 16, (uint32_t) ts.tv_sec);
  /* qemu takes the time in microseconds. */
  be32_store (e + 20, (uint32_t) (ts.tv_nsec / 1000 * 1000));
  be32_store (e + 36, EXTRA_BYTES);
  be64_store (e + ENTRY_BYTES + 8, q->img->size);    /* disk_size */
  memcpy (e + ENTRY_BYTES + EXTRA_BYTES, id, idlen);
  memcpy (e + ENTRY_BYTES + EXTRA_BYTES + idlen, name, namelen);
  return ENTRY_BYTES + EXTRA_BYTES + idlen + namelen;
}

/* Writes table (len bytes, n entries) to new clusters and switches the
 * header to it in one write; then the old table's clusters are dropped
 * and the list in memory read again.  Called with writeback_lock held. */
static int
switch_table (struct qcow2 *q, const uint8_t *table, uint64_t len,
              uint32_t n)
{
  uint64_t old = q->h.snapshots_offset, oldlen = q->snapshots_size;
  struct qcow2_header saved = q->h;
  int64_t off = 0;
  int r;

  if (len && (off = write_new (q, table, len, "snapshot table")) == -1)
    return -1;
  crash_test_pause ();
  qcow2_free_snapshots (q);
  q->snapshots_size = 0;
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->header_lock);
    q->h.nb_snapshots = n;
    q->h.snapshots_offset = (uint64_t) off;
    r = qcow2_write_header_fields (q, 60, 12);
    if (r == -1)
      q->h = saved;
  }
  if (qcow2_read_snapshots (q, q->cow.file_length) == -1 || r == -1)
    return -1;
  crash_test_pause ();
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);
  return oldlen ? qcow2_drop_ref (q, old, oldlen, true) : 0;
}

/* ---- the three operations ----------------------------------------------- */

/* After a failure part way: the dirty bit stays at close (rule 1), so
 * that the next read-write open rebuilds the counts. */
static int
failed (struct qcow2 *q)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);

  q->cow.leaked = true;
  return -1;
}

/* What every operation does first: counts durable, dirty bit set
 * (rule 1). */
static int
begin (struct qcow2 *q)
{
  if (q->img->readonly)
    return error_file (q->img, EROFS, "the image is opened read-only");
  if (qcow2_writeback (q, true) == -1 || qcow2_set_dirty (q, true) == -1)
    return -1;
  crash_test_pause ();
  return 0;
}

static int
create_wbl (struct qcow2 *q, const char *name)
{
  uint64_t l1bytes = (uint64_t) q->h.l1_size * 8, len;
  uint8_t e[ENTRY_BYTES + EXTRA_BYTES + 32 + MAX_NAME];
  CLEANUP_FREE uint8_t *table = NULL;
  char id[32];
  int64_t l1off = 0;

  /* Rule 2: counts up and COPIED cleared, durably, before the copy that
   * makes them needed is named by anything. */
  if (walk_l1 (q, q->cow.l1.data, q->h.l1_size, inc_slot) == -1 ||
      qcow2_writeback_wbl (q, true) == -1 || write_active_l1 (q) == -1)
    return -1;
  crash_test_pause ();
  if (l1bytes &&
      (l1off = write_new (q, q->cow.l1.data, l1bytes, "snapshot's L1 table"))
      == -1)
    return -1;
  next_id (q, id, sizeof id);
  table = build_table (q, UINT32_MAX, e,
                       encode_entry (q, e, (uint64_t) l1off, id, name), &len);
  if (table == NULL)
    return -1;
  return switch_table (q, table, len, q->h.nb_snapshots + 1);
}

int
qcow2_snapshot_create (struct image *img, const char *name)
{
  struct qcow2 *q = img->priv;

  if (q->h.nb_snapshots >= QCOW2_MAX_SNAPSHOTS)
    return error_file (img, EFBIG, "the image has %d snapshots already",
                       QCOW2_MAX_SNAPSHOTS);
  if (begin (q) == -1)
    return -1;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.writeback_lock);
  if (create_wbl (q, name) == -1 || settle (q) == -1)
    return failed (q);
  crash_test_pause ();
  return 0;
}

/* The snapshot whose id, or else whose name, is s (qemu's lookup for
 * apply); by name only for delete.  -1 if none. */
static int64_t
find (struct qcow2 *q, const char *s, bool by_id)
{
  uint32_t i;

  for (i = 0; by_id && i < q->h.nb_snapshots; i++)
    if (strcmp (q->snapshots[i].id, s) == 0)
      return i;
  for (i = 0; i < q->h.nb_snapshots; i++)
    if (strcmp (q->snapshots[i].name, s) == 0)
      return i;
  return -1;
}

/* The header switched to the new active L1 (nt, entries) and size, in
 * one write of bytes 24-47; the old table's clusters are then dropped.
 * Called with writeback_lock held. */
static int
switch_l1 (struct qcow2 *q, struct mc_table *nt, uint64_t entries,
           uint64_t size)
{
  struct mc_table old;
  int r;

  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->header_lock);
    struct qcow2_header saved = q->h;
    q->h.size = size;
    q->h.l1_size = (uint32_t) entries;
    q->h.l1_table_offset = nt->offset;
    r = qcow2_write_header_fields (q, 24, 24);
    if (r == -1)
      q->h = saved;
  }
  if (r == -1)
    return -1;
  q->img->size = size;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);
  old = q->cow.l1;
  q->cow.l1 = *nt;
  *nt = old;
  return old.bytes ? qcow2_drop_ref (q, old.offset, old.bytes, true) : 0;
}

static int
apply_wbl (struct qcow2 *q, const struct qcow2_snapshot *sn)
{
  uint64_t need = qcow2_l1_entries_for (sn->disk_size, q->cluster_bits,
                                        q->l2_bits);
  uint64_t n = q->h.l1_size, bytes;
  struct mc_table nt = { 0 };
  CLEANUP_FREE uint8_t *l1 = NULL;
  int64_t off;
  int r;

  if (sn->l1_size > n)
    n = sn->l1_size;
  if (need > n)
    n = need;
  bytes = n * 8;
  if (bytes > QCOW2_MAX_L1_BYTES)
    return error_file (q->img, EFBIG, "the snapshot's L1 table is too "
                       "large");
  if ((l1 = read_l1 (q, sn, n)) == NULL ||
      walk_l1 (q, l1, sn->l1_size, inc_slot) == -1 ||
      qcow2_writeback_wbl (q, true) == -1)
    return -1;
  crash_test_pause ();
  if ((off = write_new (q, l1, bytes, "L1 table")) == -1)
    return -1;
  if (mc_table_init (&nt, (uint64_t) off, bytes) == -1)
    return error_file (q->img, ENOMEM, "out of memory for the L1 table");
  memcpy (nt.data, l1, bytes);
  r = switch_l1 (q, &nt, n, sn->disk_size);
  crash_test_pause ();
  /* nt holds the old active table now: drop what it reached (rule 3). */
  if (r == 0)
    r = walk_l1 (q, nt.data, nt.bytes / 8, drop_slot);
  mc_table_release (&nt);
  if (r == -1 || settle (q) == -1 ||
      walk_l1 (q, q->cow.l1.data, q->h.l1_size, copied_slot) == -1 ||
      write_active_l1 (q) == -1)
    return -1;
  return 0;
}

int
qcow2_snapshot_apply (struct image *img, const char *id_or_name)
{
  struct qcow2 *q = img->priv;
  int64_t i = find (q, id_or_name, true);

  if (i == -1)
    return error_file (img, ENOENT, "no snapshot '%s'", id_or_name);
  if (begin (q) == -1)
    return -1;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.writeback_lock);
  /* apply_wbl switches the header but not the snapshot table: the entry
   * stays valid throughout. */
  if (apply_wbl (q, &q->snapshots[i]) == -1 || settle (q) == -1)
    return failed (q);
  crash_test_pause ();
  return 0;
}

static int
delete_wbl (struct qcow2 *q, uint32_t i)
{
  struct qcow2_snapshot sn = q->snapshots[i];
  CLEANUP_FREE uint8_t *table = NULL, *l1 = NULL;
  uint64_t len;

  if ((l1 = read_l1 (q, &sn, sn.l1_size)) == NULL ||
      (table = build_table (q, i, NULL, 0, &len)) == NULL ||
      switch_table (q, table, len, q->h.nb_snapshots - 1) == -1)
    return -1;
  /* The header names the snapshot no more: drop what it reached. */
  if (walk_l1 (q, l1, sn.l1_size, drop_slot) == -1)
    return -1;
  if (sn.l1_size) {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.lock);
    if (qcow2_drop_ref (q, sn.l1_table_offset, (uint64_t) sn.l1_size * 8,
                        true) == -1)
      return -1;
  }
  if (settle (q) == -1 ||
      walk_l1 (q, q->cow.l1.data, q->h.l1_size, copied_slot) == -1 ||
      write_active_l1 (q) == -1)
    return -1;
  return 0;
}

int
qcow2_snapshot_delete (struct image *img, const char *name)
{
  struct qcow2 *q = img->priv;
  int64_t i = find (q, name, false);

  if (i == -1)
    return error_file (img, ENOENT, "snapshot not found");
  if (begin (q) == -1)
    return -1;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->cow.writeback_lock);
  if (delete_wbl (q, (uint32_t) i) == -1 || settle (q) == -1)
    return failed (q);
  crash_test_pause ();
  return 0;
}
