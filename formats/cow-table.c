/* SPDX-License-Identifier: BSD-3-Clause */
/* What QED and qcow2 do alike around their tables, written once: open
 * and close, the check's start, loading an L2 table into the cache,
 * writing metadata, and the steps of the writeback.  The I/O paths are
 * in cow.c.
 *
 * Each format keeps its own header, table encoding and table creation,
 * and states its crash ordering at the lines that keep it (qed-table.c,
 * qcow2-table.c); rules 1 and 4, which both writebacks keep the same
 * way, are stated once, in cow_write_tables.  The driver calls here run
 * the format's hooks (struct cow_ops, "open and close") in a fixed
 * order:
 *
 *   cow_open:  the format's state, the host file's length, the format's
 *              open (header, tables; it calls cow_open_state for the L2
 *              cache and the file end), then on a read-write open of a
 *              marked image the repair; on failure the state is
 *              released.
 *   cow_close: (read-write) the whole writeback, the file cut back to
 *              file_end and synced, and only then the format's mark
 *              (NEED_CHECK, the dirty bit) cleared, if everything reached
 *              the file (rule 3); the state released either way.
 *   cow_check: (read-write) the whole writeback first, so that the check
 *              reads what is on disk; then the format's check.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cow.h"
#include "rounding.h"

/* ---- open and close ---------------------------------------------------- */

/* The automatic check of a read-write open of an image marked as needing
 * one: repairs what can be repaired, or fails saying what is left. */
static int
repair_at_open (struct cow *c)
{
  struct image *img = c->img;
  struct image_check_result r;

  if (img->drv->check (img, IMAGE_CHECK_REPAIR_LEAKS |
                       IMAGE_CHECK_REPAIR_ERRORS, &r, NULL, NULL) == -1)
    return -1;
  if (r.corruptions > 0 || r.check_errors > 0)
    return error_file (img, EIO, "the image needs a check and the "
                       "automatic repair failed (%" PRIu64 " corruptions, %"
                       PRIu64 " errors left): run cowbd-img check -r all",
                       r.corruptions, r.check_errors);
  engine_alert ("%s: was not closed cleanly (%s): repaired at open: %"
                PRIu64 " leaked cluster(s) freed, %" PRIu64 " corrupt "
                "entr%s fixed", img->filename,
                img->drv == &qed_driver ? "QED NEED_CHECK set"
                : "qcow2 dirty bit set", r.leaks_fixed, r.corruptions_fixed,
                r.corruptions_fixed == 1 ? "y" : "ies");
  return 0;
}

/* A read-write open of an image whose mark says it may be inconsistent
 * (a crash, or a failed writeback) repairs it before anything else. */
static int
repair_if_marked (struct cow *c, const struct image_open_opts *opts)
{
  if (c->img->readonly || !c->marked || (opts->flags & IMAGE_OPEN_NO_REPAIR))
    return 0;
  return repair_at_open (c);
}

int
cow_open (struct image *img, const struct image_open_opts *opts,
          size_t size, const struct cow_ops *ops)
{
  struct cow *c;
  uint64_t file_size;

  if (source_size (img->src, &file_size) == -1)
    return error_syscall (img, "stat");
  c = calloc (1, size);
  if (c == NULL)
    return error_file (img, ENOMEM, "out of memory");
  cow_init (c, img, ops);
  img->priv = c;
  if (ops->open (c, opts, file_size) == 0 && repair_if_marked (c, opts) == 0)
    return 0;
  ops->release (c);
  img->priv = NULL;
  return -1;
}

int
cow_open_state (struct cow *c, const struct image_open_opts *opts,
                uint64_t table_bytes, uint64_t file_size)
{
  uint64_t cache = opts->cache_size ? opts->cache_size
                                    : MC_DEFAULT_CACHE_SIZE;

  c->l2_cache = mc_new (table_bytes, cache, 4);
  if (c->l2_cache == NULL)
    return error_file (c->img, ENOMEM, "out of memory");
  mc_allow_compact (c->l2_cache);       /* thin images: metacache.h */
  c->file_length = file_size;
  if (!round_up_checked (file_size, 1ULL << c->cluster_bits, &c->file_end))
    return error_file (c->img, EINVAL, "file too large");
  return 0;
}

/* Whether a close may clear the mark: everything reached the file.  A
 * refused write on metadata keeps the mark too, unless the format records
 * the corruption in a mark of its own (mark_corrupt: qcow2's corrupt
 * bit). */
static bool
closes_clean (struct cow *c)
{
  return !c->broken && !c->leaked && !sticky_failed (c->img) &&
         (!c->corrupt || c->ops->mark_corrupt);
}

int
cow_close (struct image *img)
{
  struct cow *c = img->priv;
  int r = 0;

  if (!img->readonly) {
    r = c->ops->write_back_all (c);
    if (r == 0)
      r = cow_cut_and_sync (c);
    if (r == 0 && closes_clean (c))
      r = c->ops->set_mark (c, false);
  }
  c->ops->release (c);
  img->priv = NULL;
  return r;
}

/* ---- the check --------------------------------------------------------- */

int
cow_check (struct image *img, unsigned flags,
           struct image_check_result *result, image_report_fn report,
           void *opaque)
{
  struct cow *c = img->priv;
  struct cow_check chk = { .flags = flags, .res = result, .report = report,
                           .opaque = opaque };

  memset (result, 0, sizeof *result);
  /* Check what is on disk. */
  if (!img->readonly && c->ops->write_back_all (c) == -1)
    return -1;
  if (source_size (img->src, &chk.file_size) == -1)
    return error_syscall (img, "stat");
  return c->ops->check (c, &chk);
}

bool
cow_check_fix (struct cow_check *k, bool fixable)
{
  if (fixable && (k->flags & IMAGE_CHECK_REPAIR_ERRORS)) {
    k->res->corruptions_fixed++;
    return true;
  }
  k->res->corruptions++;
  return false;
}

struct mc_entry *
cow_check_l2 (struct cow *c, struct cow_check *k, uint64_t l2_offset)
{
  struct mc_entry *l2;

  if (cow_get_l2 (c, l2_offset, &l2) == -1) {
    cow_say (k, "ERROR reading L2 table 0x%" PRIx64 ": %s", l2_offset,
             image_error ());
    k->res->check_errors++;
    return NULL;
  }
  l2->pins++;
  return l2;
}

/* ---- tables ------------------------------------------------------------ */

int
cow_load_table (struct cow *c, struct metacache *mc, uint64_t offset,
                const char *what, struct mc_entry **ep)
{
  struct mc_entry *e = mc_find (mc, offset);

  if (e == NULL) {
    e = mc_insert (mc, offset);
    if (e == NULL)
      return error_file (c->img, ENOMEM, "out of memory reading %s at 0x%"
                         PRIx64, what, offset);
    if (source_pread (c->img->src, e->t.data, mc_table_bytes (mc),
                      offset) == -1) {
      int r = error_file (c->img, errno, "reading %s at 0x%" PRIx64 ": %s",
                          what, offset, strerror (errno));
      mc_remove (mc, e);
      return r;
    }
  }
  *ep = e;
  return 0;
}

int
cow_get_l2 (struct cow *c, uint64_t l2_offset, struct mc_entry **ep)
{
  return cow_load_table (c, c->l2_cache, l2_offset, "L2 table", ep);
}

int
cow_write_meta (void *cow, const void *buf, size_t len, uint64_t offset)
{
  struct cow *c = cow;

  if (source_pwrite (c->img->src, buf, len, offset) == -1)
    return error_file (c->img, errno, "writing metadata at 0x%" PRIx64
                       ": %s", offset, strerror (errno));
  return 0;
}

int
cow_fdatasync (struct cow *c)
{
  if (cow_sync (c) == -1)
    return error_syscall (c->img, "fdatasync");
  return 0;
}

void
cow_set_broken (struct cow *c)
{
  c->broken = true;
  sticky_set (c->img);
}

/* ---- table pages and the writeback ------------------------------------- */

bool
cow_cut_back (struct cow *c, uint64_t host, uint64_t end)
{
  if (c->file_end != end || ftruncate (c->img->fd, (off_t) host) == -1)
    return false;
  c->file_end = c->file_length = host;
  return true;
}

int
cow_write_table_pages (struct cow *c, struct mc_table *t)
{
  struct mc_snapshot *s = mc_snapshot_new ();
  int r = -1;

  cow_order_tables (c);
  if (s == NULL || mc_snapshot_add (s, t) == -1)
    error_file (c->img, ENOMEM, "out of memory");
  else if (mc_snapshot_empty (s))
    r = 0;
  else if ((r = mc_snapshot_write (s, cow_write_meta, c)) == -1)
    mc_table_mark_all (t);
  mc_snapshot_free (s);
  return r;
}

void
cow_cache_new_table (struct cow *c, uint64_t offset, const uint8_t *content)
{
  struct mc_entry *e = mc_find (c->l2_cache, offset);

  if (e != NULL || (e = mc_insert (c->l2_cache, offset)) == NULL)
    return;
  if (content)
    memcpy (e->t.data, content, mc_table_bytes (c->l2_cache));
  else
    memset (e->t.data, 0, mc_table_bytes (c->l2_cache));
}

int
cow_snapshot_cache (struct cow *c, struct mc_snapshot *snap,
                    struct metacache *mc)
{
  if (mc_snapshot_cache (snap, mc) == -1)
    return error_file (c->img, ENOMEM, "out of memory");
  return 0;
}

int
cow_writeback_begin (struct cow *c, struct mc_snapshot *l2,
                     uint64_t *lengths, bool *ordered)
{
  if (c->broken)
    return cow_broken_error (c);
  if (cow_snapshot_cache (c, l2, c->l2_cache) == -1)
    return -1;
  *ordered = cow_flush_begin (c, lengths);
  return 0;
}

int
cow_write_tables (struct cow *c, struct mc_snapshot *l2, bool ordered)
{
  int r = 0;

  /* Rule 1: the data the copied entries point to is durable before any
   * of them reaches the file - by a sync of its own, unless it may share
   * the one below (cow.c, "One sync or two").  With nothing to write,
   * this sync is the whole flush. */
  if (ordered || mc_snapshot_empty (l2))
    r = cow_fdatasync (c);
  /* Rule 4: the entries are durable when the flush returns. */
  if (r == 0 && !mc_snapshot_empty (l2)) {
    r = mc_snapshot_write (l2, cow_write_meta, c);
    if (r == 0)
      r = cow_fdatasync (c);
  }
  return r;
}

void
cow_writeback_end (struct cow *c, struct mc_snapshot *l2, uint64_t lengths,
                   bool ordered, int r)
{
  cow_flush_end (c, lengths, ordered, r);
  if (r == -1) {
    /* Keep what could not be written. */
    mc_snapshot_redirty (l2);
    cow_set_broken (c);
  }
  mc_snapshot_unpin (l2);
  mc_shrink (c->l2_cache);
}

int
cow_writeback_l2 (struct cow *c)
{
  struct mc_snapshot *snap = mc_snapshot_new ();
  uint64_t lengths;
  bool ordered;
  int r;

  if (snap == NULL)
    return error_file (c->img, ENOMEM, "out of memory");
  pthread_mutex_lock (&c->lock);
  r = cow_writeback_begin (c, snap, &lengths, &ordered);
  pthread_mutex_unlock (&c->lock);
  if (r == 0) {
    r = cow_write_tables (c, snap, ordered);
    pthread_mutex_lock (&c->lock);
    cow_writeback_end (c, snap, lengths, ordered, r);
    pthread_mutex_unlock (&c->lock);
  }
  mc_snapshot_free (snap);
  return r;
}
