/* SPDX-License-Identifier: BSD-3-Clause */
/* The metadata cache on its own: lookup, LRU eviction of clean entries
 * only, pins, the soft bound, dirty pages and snapshots. */
#include <config.h>
#undef NDEBUG
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metacache.h"

#define TB (4 * MC_PAGE_SIZE)   /* a 4-page table */

struct written {
  uint64_t offset[16];
  size_t len[16];
  uint8_t first[16];
  unsigned n;
};

static int
record_write (void *opaque, const void *buf, size_t len, uint64_t offset)
{
  struct written *w = opaque;
  w->offset[w->n] = offset;
  w->len[w->n] = len;
  w->first[w->n] = *(const uint8_t *) buf;
  w->n++;
  return 0;
}

static int
fail_write (void *opaque, const void *buf, size_t len, uint64_t offset)
{
  return -1;
}

static int
count_dirty (struct mc_entry *e, void *opaque)
{
  (*(unsigned *) opaque)++;
  return 0;
}

int
main (void)
{
  struct metacache *mc = mc_new (TB, 3 * TB, 2);
  struct mc_entry *a, *b, *c, *d;
  struct mc_snapshot *s;
  struct written w = { .n = 0 };
  unsigned dirty = 0;

  assert (mc && mc_count (mc) == 0 && mc_table_bytes (mc) == TB);

  /* Insert and find. */
  a = mc_insert (mc, 1 * TB);
  b = mc_insert (mc, 2 * TB);
  c = mc_insert (mc, 3 * TB);
  assert (a && b && c && mc_count (mc) == 3 && !mc_over_budget (mc));
  assert (mc_find (mc, 2 * TB) == b && mc_find (mc, 9 * TB) == NULL);

  /* LRU: the finds above made the order (newest first) b, c, a; touch a
   * and c is the oldest, so it goes first. */
  assert (mc_find (mc, 1 * TB) == a);
  d = mc_insert (mc, 4 * TB);
  assert (mc_count (mc) == 3 && mc_find (mc, 3 * TB) == NULL);
  assert (mc_find (mc, 1 * TB) == a && mc_find (mc, 4 * TB) == d);
  c = mc_find (mc, 2 * TB);
  assert (c == b);

  /* Dirty and pinned entries are never evicted: with all three held the
   * cache grows past its bound and says so. */
  mc_table_mark (&a->t, 10, 8);
  c->pins++;
  d->pins++;
  b = mc_insert (mc, 5 * TB);
  assert (mc_count (mc) == 4 && mc_over_budget (mc));
  assert (mc_find (mc, 1 * TB) == a);
  mc_shrink (mc);               /* b is clean and unpinned: it goes */
  assert (mc_count (mc) == 3 && mc_find (mc, 5 * TB) == NULL);
  c->pins--;
  d->pins--;

  /* Dirty pages: page 0 of a, pages 1-2 of c (one run), last page of d. */
  mc_table_mark (&c->t, MC_PAGE_SIZE + 5, MC_PAGE_SIZE);
  mc_table_mark (&d->t, TB - 1, 1);
  memset (a->t.data, 0xaa, TB);
  memset (c->t.data, 0xcc, TB);
  memset (d->t.data, 0xdd, TB);
  mc_for_each_dirty (mc, count_dirty, &dirty);
  assert (dirty == 3);

  s = mc_snapshot_new ();
  assert (mc_snapshot_add (s, &a->t) == 0);
  assert (mc_snapshot_add (s, &c->t) == 0);
  assert (mc_snapshot_add (s, &d->t) == 0);
  assert (!a->t.any_dirty && !c->t.any_dirty && !d->t.any_dirty);
  /* Changes after the snapshot are not in it. */
  memset (c->t.data, 0x11, TB);
  assert (mc_snapshot_write (s, record_write, &w) == 0);
  assert (w.n == 3);
  assert (w.offset[0] == 1 * TB && w.len[0] == MC_PAGE_SIZE &&
          w.first[0] == 0xaa);
  assert (w.offset[1] == 2 * TB + MC_PAGE_SIZE &&
          w.len[1] == 2 * MC_PAGE_SIZE && w.first[1] == 0xcc);
  assert (w.offset[2] == 4 * TB + 3 * MC_PAGE_SIZE &&
          w.len[2] == MC_PAGE_SIZE && w.first[2] == 0xdd);

  /* A failed write puts the pages back to dirty. */
  assert (mc_snapshot_write (s, fail_write, NULL) == -1);
  mc_snapshot_redirty (s);
  assert (a->t.any_dirty && c->t.any_dirty && d->t.any_dirty);
  mc_snapshot_free (s);

  /* A whole cache: every dirty entry is copied and pinned (not evictable)
   * until unpinned. */
  s = mc_snapshot_new ();
  assert (mc_snapshot_cache (s, mc) == 0);
  assert (!a->t.any_dirty && !c->t.any_dirty && !d->t.any_dirty);
  assert (a->pins == 1 && c->pins == 1 && d->pins == 1);
  mc_shrink (mc);
  assert (mc_count (mc) == 3);
  mc_snapshot_redirty (s);              /* as after a failed write */
  mc_snapshot_unpin (s);
  assert (a->pins == 0 && c->pins == 0 && d->pins == 0);
  assert (a->t.any_dirty && c->t.any_dirty && d->t.any_dirty);
  mc_snapshot_free (s);

  s = mc_snapshot_new ();
  assert (mc_snapshot_add (s, &c->t) == 0 && !mc_snapshot_empty (s));
  mc_snapshot_free (s);
  mc_table_clean (&a->t);
  assert (!a->t.any_dirty);

  mc_remove (mc, a);
  assert (mc_count (mc) == 2 && mc_find (mc, 1 * TB) == NULL);
  mc_free (mc);
  printf ("metacache: ok\n");
  return 0;
}
