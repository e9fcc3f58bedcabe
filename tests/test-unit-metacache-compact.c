/* SPDX-License-Identifier: BSD-3-Clause */
/* Compact tables in the metadata cache (metacache.h): a thin table read
 * back through its compact form equals the dense one, word for word; a
 * table made dense for a change keeps its content and takes the change;
 * dirty, pinned and mostly non-zero tables are never made compact; the
 * bound counts a compact table at its compact size, and compact tables
 * are evicted only when no dense one can make room; hits, misses and
 * evictions keep their meaning; a table just loaded is made compact at
 * once on request (mc_compact_loaded) if it qualifies. */
#include <config.h>
#undef NDEBUG
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metacache.h"

#define TB (16 * MC_PAGE_SIZE)  /* a 64 KiB table: 8192 words */
#define WORDS (TB / 8)

static uint64_t hits, misses, evictions;

static void
stats (struct metacache *mc)
{
  hits = misses = evictions = 0;
  mc_get_stats (mc, &hits, &misses, &evictions);
}

/* Fills table number k the way a thin image's would be: every 1024th
 * word (and the last) non-zero, the rest zero; dense: every word. */
static void
fill (uint8_t *data, unsigned k, int dense)
{
  unsigned i;

  memset (data, 0, TB);
  for (i = 0; i < WORDS; i++)
    if (dense || i % 1024 == k % 1024 || i == WORDS - 1) {
      uint64_t w = 0x0100000000000000ULL * (k + 1) + i + 1;
      memcpy (data + i * 8, &w, 8);
    }
}

static struct mc_entry *
load (struct metacache *mc, unsigned k, int dense)
{
  struct mc_entry *e = mc_find (mc, (uint64_t) k * TB);

  if (e == NULL) {
    e = mc_insert (mc, (uint64_t) k * TB);
    assert (e != NULL);
    fill (e->t.data, k, dense);
  }
  return e;
}

/* Every word of e read with mc_word equals table k's. */
static void
check_words (const struct mc_entry *e, unsigned k, int dense)
{
  static uint8_t want[TB];
  unsigned i;

  fill (want, k, dense);
  for (i = 0; i < WORDS; i++) {
    uint64_t w;
    memcpy (&w, want + i * 8, 8);
    assert (mc_word (e, i * 8) == w);
  }
  if (e->t.data)
    assert (memcmp (e->t.data, want, TB) == 0);
}

/* mc_compact_loaded: a thin table is compact at once, far under the
 * bound; a mostly non-zero, a dirty or a pinned one stays dense; so does
 * every table of a cache without mc_allow_compact.  mc_bytes follows. */
static void
check_compact_loaded (void)
{
  struct metacache *mc = mc_new (TB, 64 * TB, 2);
  struct mc_entry *e;
  unsigned k;

  assert (mc != NULL);
  mc_allow_compact (mc);
  for (k = 0; k < 32; k++) {
    e = load (mc, k, 0);
    mc_compact_loaded (mc, e);
    assert (e->t.data == NULL && mc_peek (mc, (uint64_t) k * TB) == e);
    check_words (e, k, 0);
  }
  assert (mc_compactions (mc) == 32 && mc_bytes (mc) < 32 * TB / 64);
  e = load (mc, 40, 1);
  mc_compact_loaded (mc, e);
  assert (e->t.data != NULL);
  e = load (mc, 41, 0);
  mc_table_mark (&e->t, 0, 8);
  mc_compact_loaded (mc, e);
  assert (e->t.data != NULL);
  e = load (mc, 42, 0);
  e->pins++;
  mc_compact_loaded (mc, e);
  assert (e->t.data != NULL);
  e->pins--;
  assert (mc_compactions (mc) == 32 && mc_count (mc) == 35);
  assert (mc_bytes (mc) > 3 * TB && mc_bytes (mc) < 4 * TB);
  mc_free (mc);

  mc = mc_new (TB, 64 * TB, 2);
  assert (mc != NULL);
  e = load (mc, 0, 0);
  mc_compact_loaded (mc, e);
  assert (e->t.data != NULL && mc_bytes (mc) == TB);
  mc_free (mc);
}

int
main (void)
{
  struct metacache *mc = mc_new (TB, 4 * TB, 2);
  struct mc_entry *e[8], *x;
  struct mc_snapshot *s;
  unsigned k;

  assert (mc != NULL);
  mc_allow_compact (mc);

  /* Four thin tables fill the bound; four more make the oldest compact
   * (not evicted): all eight stay, within the bound. */
  for (k = 0; k < 8; k++)
    e[k] = load (mc, k, 0);
  assert (mc_count (mc) == 8 && !mc_over_budget (mc));
  assert (mc_compactions (mc) >= 4);
  stats (mc);
  assert (misses == 8 && evictions == 0 && hits == 0);
  for (k = 0; k < 4; k++)
    assert (e[k]->t.data == NULL && e[k]->nwords == 9);
  assert (e[7]->t.data != NULL);

  /* A read answers from the compact form, word for word, and counts as
   * a hit; the table stays compact. */
  for (k = 0; k < 8; k++) {
    x = mc_peek (mc, (uint64_t) k * TB);
    assert (x == e[k]);
    check_words (x, k, 0);
  }
  assert (e[0]->t.data == NULL);
  stats (mc);
  assert (hits == 8 && misses == 8);
  assert (mc_peek (mc, 100 * TB) == NULL);

  /* mc_find gives a dense table, equal to the original; the same entry. */
  x = mc_find (mc, 1 * TB);
  assert (x == e[1] && x->t.data != NULL);
  check_words (x, 1, 0);

  /* A change: made dense (room is made around it, within the bound), the
   * change goes in, the table is dirty and never made compact again until
   * written; its snapshot holds the change. */
  assert (mc_make_dense (mc, e[2]) == 0);
  assert (e[2]->t.data != NULL && !mc_over_budget (mc));
  check_words (e[2], 2, 0);
  memset (e[2]->t.data + 8 * 5, 0x77, 8);
  mc_table_mark (&e[2]->t, 8 * 5, 8);
  for (k = 10; k < 20; k++)
    load (mc, k, 0);
  assert (e[2]->t.data != NULL && e[2]->t.any_dirty);
  assert (mc_peek (mc, 2 * TB) == e[2]);
  assert (mc_word (e[2], 8 * 5) == 0x7777777777777777ULL);
  s = mc_snapshot_new ();
  assert (s && mc_snapshot_cache (s, mc) == 0 && !mc_snapshot_empty (s));
  assert (e[2]->pins == 1 && !e[2]->t.any_dirty);
  /* Pinned by the snapshot: still not made compact. */
  for (k = 20; k < 30; k++)
    load (mc, k, 0);
  assert (e[2]->t.data != NULL);
  mc_snapshot_unpin (s);
  mc_snapshot_free (s);
  /* Clean and unpinned now: it may go compact, keeping the change. */
  for (k = 30; k < 40; k++)
    load (mc, k, 0);
  assert (e[2]->t.data == NULL);
  assert (mc_word (e[2], 8 * 5) == 0x7777777777777777ULL);
  assert (mc_word (e[2], 8 * 6) == 0);
  assert (!mc_over_budget (mc));

  /* A table mostly non-zero is evicted, never made compact. */
  load (mc, 50, 1);
  for (k = 60; k < 70; k++)
    load (mc, k, 0);
  assert (mc_peek (mc, 50 * TB) == NULL);
  stats (mc);
  assert (evictions == 1);

  /* Compact tables leave only when no dense table can make room: with
   * the two dense ones pinned, a new table takes the place of every
   * compact one (the bound counts them). */
  mc_free (mc);
  mc = mc_new (TB, 3 * TB, 2);
  assert (mc != NULL);
  mc_allow_compact (mc);
  for (k = 0; k < 40; k++)
    load (mc, k, 0);
  stats (mc);
  assert (mc_count (mc) == 40 && !mc_over_budget (mc) && evictions == 0);
  e[0] = mc_peek (mc, 38 * TB);
  e[1] = mc_peek (mc, 39 * TB);
  assert (e[0]->t.data && e[1]->t.data);
  e[0]->pins++;
  e[1]->pins++;
  load (mc, 100, 0);
  stats (mc);
  assert (evictions == 38 && mc_count (mc) == 3 && !mc_over_budget (mc));
  assert (mc_peek (mc, 0) == NULL && mc_peek (mc, 37 * TB) == NULL);
  assert (e[0]->t.data && e[1]->t.data);
  e[0]->pins--;
  e[1]->pins--;

  /* A cache without mc_allow_compact evicts as before. */
  mc_free (mc);
  mc = mc_new (TB, 2 * TB, 2);
  for (k = 0; k < 3; k++)
    load (mc, k, 0);
  assert (mc_count (mc) == 2 && mc_compactions (mc) == 0);
  assert (mc_peek (mc, 0) == NULL);
  mc_free (mc);
  check_compact_loaded ();
  printf ("metacache compact: ok\n");
  return 0;
}
