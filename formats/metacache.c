/* SPDX-License-Identifier: BSD-3-Clause */
/* The metadata cache: see metacache.h for the design.  No I/O, no locks:
 * every function is called with the owning driver's lock held.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "metacache.h"
#include "minmax.h"
#include "rounding.h"

#define HASH_BUCKETS 1024       /* power of two */

/* A least recently used list: dense and compact tables each have one. */
struct mc_lru {
  struct mc_entry *head, *tail; /* most recently used first */
};

struct metacache {
  size_t table_bytes;
  uint64_t capacity;            /* the bound, in bytes */
  uint64_t used;                /* dense: table_bytes; compact: its charge
                                   (changed by add_used: read by
                                   mc_bytes without the lock) */
  unsigned count;
  bool compact_ok;              /* mc_allow_compact */
  struct mc_entry *buckets[HASH_BUCKETS];
  struct mc_lru dense, compact;
  uint8_t *spare;               /* one table's data kept for reuse: its
                                   pages are already faulted in */
  /* Figures for image_get_stats: written under the driver's lock, read
   * without it (relaxed atomics). */
  uint64_t hits, inserts, evictions, compactions;
};

static void
count (uint64_t *p)
{
  __atomic_store_n (p, __atomic_load_n (p, __ATOMIC_RELAXED) + 1,
                    __ATOMIC_RELAXED);
}

static void
add_used (struct metacache *mc, int64_t bytes)
{
  __atomic_store_n (&mc->used, mc->used + (uint64_t) bytes, __ATOMIC_RELAXED);
}

uint64_t
mc_bytes (const struct metacache *mc)
{
  return __atomic_load_n (&mc->used, __ATOMIC_RELAXED);
}

void
mc_get_stats (const struct metacache *mc, uint64_t *hits, uint64_t *misses,
              uint64_t *evictions)
{
  *hits += __atomic_load_n (&mc->hits, __ATOMIC_RELAXED);
  *misses += __atomic_load_n (&mc->inserts, __ATOMIC_RELAXED);
  *evictions += __atomic_load_n (&mc->evictions, __ATOMIC_RELAXED);
}

/* ---- tables ------------------------------------------------------------- */

static size_t
table_pages (size_t bytes)
{
  return DIV_ROUND_UP (bytes, (size_t) MC_PAGE_SIZE);
}

/* Tables of this size and more are mapped directly: their zero pages cost
 * nothing until written, whatever malloc's mmap threshold has become (it
 * grows after large frees, and calloc then zeroes reused heap memory,
 * touching every page: a fresh clone's empty 256 KiB L1 table). */
#define MC_MMAP_MIN (64u << 10)

static void *
table_alloc (size_t bytes)
{
  void *p;

  if (bytes < MC_MMAP_MIN)
    return calloc (1, bytes);
  p = mmap (NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
            -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

static void
table_free (void *p, size_t bytes)
{
  if (p == NULL)
    return;
  if (bytes < MC_MMAP_MIN)
    free (p);
  else
    munmap (p, bytes);
}

int
mc_table_init (struct mc_table *t, uint64_t offset, size_t bytes)
{
  size_t words = DIV_ROUND_UP (table_pages (bytes), (size_t) 64);

  t->offset = offset;
  t->bytes = bytes;
  t->any_dirty = false;
  t->data = table_alloc (bytes);
  t->dirty = calloc (words, sizeof *t->dirty);
  if (t->data == NULL || t->dirty == NULL) {
    mc_table_release (t);
    errno = ENOMEM;
    return -1;
  }
  return 0;
}

void
mc_table_release (struct mc_table *t)
{
  table_free (t->data, t->bytes);
  free (t->dirty);
  t->data = NULL;
  t->dirty = NULL;
}

void
mc_table_mark (struct mc_table *t, size_t start, size_t len)
{
  size_t p, first, last;

  if (len == 0)
    return;
  assert (t->data != NULL);     /* never a compact table */
  assert (start + len <= t->bytes);
  first = start / MC_PAGE_SIZE;
  last = (start + len - 1) / MC_PAGE_SIZE;
  for (p = first; p <= last; p++)
    t->dirty[p / 64] |= 1ULL << (p % 64);
  t->any_dirty = true;
}

void
mc_table_mark_all (struct mc_table *t)
{
  mc_table_mark (t, 0, t->bytes);
}

void
mc_table_clean (struct mc_table *t)
{
  memset (t->dirty, 0,
          DIV_ROUND_UP (table_pages (t->bytes), (size_t) 64) *
          sizeof *t->dirty);
  t->any_dirty = false;
}

static bool
page_dirty (const struct mc_table *t, size_t p)
{
  return t->dirty[p / 64] & (1ULL << (p % 64));
}

/* ---- the cache ------------------------------------------------------------ */

struct metacache *
mc_new (size_t table_bytes, uint64_t capacity, unsigned min_entries)
{
  struct metacache *mc = calloc (1, sizeof *mc);
  uint64_t n = capacity / table_bytes;

  if (mc == NULL)
    return NULL;
  mc->table_bytes = table_bytes;
  mc->capacity = MIN (MAX (n, (uint64_t) min_entries),
                      (uint64_t) UINT32_MAX) * table_bytes;
  return mc;
}

void
mc_allow_compact (struct metacache *mc)
{
  assert (mc->table_bytes % 8 == 0);
  mc->compact_ok = true;
}

/* What an entry costs the bound. */
static uint64_t
charge (const struct metacache *mc, const struct mc_entry *e)
{
  if (e->t.data)
    return mc->table_bytes;
  return sizeof *e + (uint64_t) e->nwords * (sizeof *e->val +
                                             sizeof *e->idx);
}

/* A table's data buffer: the spare one if there is one (not zeroed). */
static uint8_t *
take_data (struct metacache *mc)
{
  uint8_t *p = mc->spare;

  if (p == NULL)
    return table_alloc (mc->table_bytes);
  mc->spare = NULL;
  return p;
}

static void
give_data (struct metacache *mc, uint8_t *p)
{
  if (mc->spare == NULL)
    mc->spare = p;
  else
    table_free (p, mc->table_bytes);
}

/* A clean dense entry for the table at offset, its data uninitialised. */
static struct mc_entry *
entry_new (struct metacache *mc, uint64_t offset)
{
  struct mc_entry *e = calloc (1, sizeof *e);
  size_t words = DIV_ROUND_UP (table_pages (mc->table_bytes), (size_t) 64);

  if (e == NULL)
    return NULL;
  e->t.offset = offset;
  e->t.bytes = mc->table_bytes;
  e->t.dirty = calloc (words, sizeof *e->t.dirty);
  e->t.data = e->t.dirty ? take_data (mc) : NULL;
  if (e->t.data == NULL) {
    free (e->t.dirty);
    free (e);
    return NULL;
  }
  return e;
}

static void
free_entry (struct metacache *mc, struct mc_entry *e)
{
  if (e->t.data)
    give_data (mc, e->t.data);
  free (e->t.dirty);
  free (e->val);
  free (e);
}

static void
lru_unlink (struct mc_lru *l, struct mc_entry *e)
{
  if (e->lru_prev)
    e->lru_prev->lru_next = e->lru_next;
  else
    l->head = e->lru_next;
  if (e->lru_next)
    e->lru_next->lru_prev = e->lru_prev;
  else
    l->tail = e->lru_prev;
  e->lru_prev = e->lru_next = NULL;
}

static void
lru_push_head (struct mc_lru *l, struct mc_entry *e)
{
  e->lru_prev = NULL;
  e->lru_next = l->head;
  if (l->head)
    l->head->lru_prev = e;
  l->head = e;
  if (l->tail == NULL)
    l->tail = e;
}

static struct mc_lru *
list_of (struct metacache *mc, const struct mc_entry *e)
{
  return e->t.data ? &mc->dense : &mc->compact;
}

static void
free_list (struct metacache *mc, struct mc_lru *l)
{
  struct mc_entry *e, *next;

  for (e = l->head; e; e = next) {
    next = e->lru_next;
    free_entry (mc, e);
  }
}

void
mc_free (struct metacache *mc)
{
  if (mc == NULL)
    return;
  free_list (mc, &mc->dense);
  free_list (mc, &mc->compact);
  table_free (mc->spare, mc->table_bytes);
  free (mc);
}

static unsigned
bucket_of (const struct metacache *mc, uint64_t offset)
{
  /* Tables are table_bytes apart at least: drop the low bits. */
  uint64_t k = offset / mc->table_bytes;
  k ^= k >> 17;
  k *= 0x9e3779b97f4a7c15ULL;
  return (unsigned) (k >> 32) & (HASH_BUCKETS - 1);
}

/* The entry at offset, in either form, moved to the head of its list. */
static struct mc_entry *
lookup (struct metacache *mc, uint64_t offset)
{
  struct mc_entry *e;

  for (e = mc->buckets[bucket_of (mc, offset)]; e; e = e->hash_next)
    if (e->t.offset == offset) {
      struct mc_lru *l = list_of (mc, e);
      count (&mc->hits);
      if (l->head != e) {
        lru_unlink (l, e);
        lru_push_head (l, e);
      }
      return e;
    }
  return NULL;
}

struct mc_entry *
mc_peek (struct metacache *mc, uint64_t offset)
{
  return lookup (mc, offset);
}

static void
hash_unlink (struct metacache *mc, struct mc_entry *e)
{
  struct mc_entry **pp = &mc->buckets[bucket_of (mc, e->t.offset)];

  while (*pp != e)
    pp = &(*pp)->hash_next;
  *pp = e->hash_next;
  e->hash_next = NULL;
}

void
mc_remove (struct metacache *mc, struct mc_entry *e)
{
  assert (e->pins == 0);
  hash_unlink (mc, e);
  lru_unlink (list_of (mc, e), e);
  mc->count--;
  add_used (mc, -(int64_t) charge (mc, e));
  free_entry (mc, e);
}

/* ---- compact tables ------------------------------------------------------- */

/* The non-zero words of a dense table, or more than max if there are.
 * Counted 64 words at a time (a loop the compiler vectorises), stopping
 * early for a table that is no candidate. */
static uint32_t
count_words (const struct metacache *mc, const struct mc_entry *e,
             uint32_t max)
{
  const uint8_t *p = e->t.data;
  size_t i = 0, j, words = mc->table_bytes / 8;
  uint32_t n = 0;

  while (i < words && n <= max) {
    size_t end = MIN (i + 64, words);
    for (j = i; j < end; j++) {
      uint64_t w;
      memcpy (&w, p + j * 8, sizeof w);
      n += w != 0;
    }
    i = end;
  }
  return n;
}

/* Makes the clean, unpinned dense entry e compact if few enough of its
 * words are non-zero: 0, or -1 (e unchanged). */
static int
compact (struct metacache *mc, struct mc_entry *e)
{
  /* Compact only where it saves 7/8 of the table at least. */
  uint32_t max = (uint32_t) (mc->table_bytes / 8 /
                             (sizeof *e->val + sizeof *e->idx));
  uint32_t n = count_words (mc, e, max), k = 0;
  size_t i, words = mc->table_bytes / 8;
  uint64_t *val;

  assert (e->pins == 0 && !e->t.any_dirty && e->t.data);
  if (n > max)
    return -1;
  val = malloc (n * (sizeof *val + sizeof *e->idx) + 1);
  if (val == NULL)
    return -1;
  e->idx = (uint32_t *) (val + n);
  for (i = 0; i < words && k < n; i++) {
    memcpy (&val[k], e->t.data + i * 8, sizeof *val);
    if (val[k] != 0)
      e->idx[k++] = (uint32_t) i;
  }
  lru_unlink (&mc->dense, e);
  add_used (mc, -(int64_t) mc->table_bytes);
  give_data (mc, e->t.data);
  e->t.data = NULL;
  e->val = val;
  e->nwords = n;
  add_used (mc, (int64_t) charge (mc, e));
  lru_push_head (&mc->compact, e);
  count (&mc->compactions);
  return 0;
}

void
mc_compact_loaded (struct metacache *mc, struct mc_entry *e)
{
  if (mc->compact_ok && e->t.data && e->pins == 0 && !e->t.any_dirty)
    compact (mc, e);            /* or stays dense: it has too many words */
}

uint64_t
mc_compact_word (const struct mc_entry *e, size_t byte)
{
  uint32_t want = (uint32_t) (byte / 8), lo = 0, hi = e->nwords;

  assert (byte % 8 == 0 && e->t.data == NULL);
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (e->idx[mid] < want)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < e->nwords && e->idx[lo] == want ? e->val[lo] : 0;
}

/* Expands the compact entry e in place, at the head of the dense list.
 * 0, or -1 on ENOMEM (e unchanged). */
static int
expand (struct metacache *mc, struct mc_entry *e)
{
  uint8_t *data = take_data (mc);
  uint32_t k;

  if (data == NULL) {
    errno = ENOMEM;
    return -1;
  }
  memset (data, 0, mc->table_bytes);
  for (k = 0; k < e->nwords; k++)
    memcpy (data + (size_t) e->idx[k] * 8, &e->val[k], sizeof e->val[k]);
  lru_unlink (&mc->compact, e);
  add_used (mc, -(int64_t) charge (mc, e));
  free (e->val);
  e->val = NULL;
  e->idx = NULL;
  e->nwords = 0;
  e->t.data = data;
  add_used (mc, (int64_t) mc->table_bytes);
  lru_push_head (&mc->dense, e);
  return 0;
}

/* ---- making room ---------------------------------------------------------- */

static struct mc_entry *
victim (struct mc_lru *l)
{
  struct mc_entry *e;

  for (e = l->tail; e; e = e->lru_prev)
    if (e->pins == 0 && !e->t.any_dirty)
      return e;
  return NULL;
}

/* Frees some room: compacts or evicts the least recently used clean,
 * unpinned dense table, else evicts the least recently used compact one.
 * False if there is none. */
static bool
make_room (struct metacache *mc)
{
  struct mc_entry *e = victim (&mc->dense);

  if (e && mc->compact_ok && compact (mc, e) == 0)
    return true;
  if (e == NULL)
    e = victim (&mc->compact);
  if (e == NULL)
    return false;
  count (&mc->evictions);
  mc_remove (mc, e);
  return true;
}

bool
mc_over_budget (const struct metacache *mc)
{
  return mc->used > mc->capacity;
}

void
mc_shrink (struct metacache *mc)
{
  while (mc_over_budget (mc) && make_room (mc))
    ;
}

struct mc_entry *
mc_find (struct metacache *mc, uint64_t offset)
{
  struct mc_entry *e = lookup (mc, offset);

  if (e && e->t.data == NULL && expand (mc, e) == -1) {
    mc_remove (mc, e);          /* clean: read again from the file */
    return NULL;
  }
  return e;
}

int
mc_make_dense (struct metacache *mc, struct mc_entry *e)
{
  if (e->t.data)
    return 0;
  if (expand (mc, e) == -1)
    return -1;
  e->pins++;                    /* room is made around it, not with it */
  mc_shrink (mc);
  e->pins--;
  return 0;
}

struct mc_entry *
mc_insert (struct metacache *mc, uint64_t offset)
{
  struct mc_entry *e;
  unsigned b;

  for (e = mc->buckets[bucket_of (mc, offset)]; e; e = e->hash_next)
    assert (e->t.offset != offset);
  count (&mc->inserts);
  while (mc->used + mc->table_bytes > mc->capacity && make_room (mc))
    ;
  e = entry_new (mc, offset);
  if (e == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  b = bucket_of (mc, offset);
  e->hash_next = mc->buckets[b];
  mc->buckets[b] = e;
  lru_push_head (&mc->dense, e);
  mc->count++;
  add_used (mc, (int64_t) mc->table_bytes);
  return e;
}

int
mc_for_each_dirty (struct metacache *mc,
                   int (*fn) (struct mc_entry *e, void *opaque),
                   void *opaque)
{
  struct mc_entry *e;
  int r;

  /* Dirty tables are always dense. */
  for (e = mc->dense.head; e; e = e->lru_next)
    if (e->t.any_dirty && (r = fn (e, opaque)) != 0)
      return r;
  return 0;
}

size_t
mc_table_bytes (const struct metacache *mc)
{
  return mc->table_bytes;
}

unsigned
mc_count (const struct metacache *mc)
{
  return mc->count;
}

uint64_t
mc_compactions (const struct metacache *mc)
{
  return __atomic_load_n (&mc->compactions, __ATOMIC_RELAXED);
}

/* ---- snapshots ------------------------------------------------------------ */

struct mc_run {
  struct mc_table *t;           /* which table (resident or pinned) */
  uint64_t offset;              /* file offset of the run */
  size_t len;
  uint8_t *copy;
};

struct mc_snapshot {
  struct mc_run *runs;
  size_t n, alloc;
  struct mc_entry **pinned;     /* entries mc_snapshot_cache pinned */
  size_t npinned, apinned;
};

struct mc_snapshot *
mc_snapshot_new (void)
{
  return calloc (1, sizeof (struct mc_snapshot));
}

bool
mc_snapshot_empty (const struct mc_snapshot *s)
{
  return s->n == 0;
}

static int
add_run (struct mc_snapshot *s, struct mc_table *t, size_t start,
         size_t len)
{
  struct mc_run *r;

  if (s->n == s->alloc) {
    size_t na = s->alloc ? s->alloc * 2 : 16;
    struct mc_run *nr = realloc (s->runs, na * sizeof *nr);
    if (nr == NULL)
      return -1;
    s->runs = nr;
    s->alloc = na;
  }
  r = &s->runs[s->n];
  r->copy = malloc (len);
  if (r->copy == NULL)
    return -1;
  memcpy (r->copy, t->data + start, len);
  r->t = t;
  r->offset = t->offset + start;
  r->len = len;
  s->n++;
  return 0;
}

int
mc_snapshot_add (struct mc_snapshot *s, struct mc_table *t)
{
  size_t pages = table_pages (t->bytes), p = 0, first_run = s->n;

  if (!t->any_dirty)
    return 0;
  while (p < pages) {
    size_t q;
    if (!page_dirty (t, p)) {
      p++;
      continue;
    }
    for (q = p; q < pages && page_dirty (t, q); q++)
      ;
    if (add_run (s, t, p * MC_PAGE_SIZE,
                 MIN (q * MC_PAGE_SIZE, t->bytes) - p * MC_PAGE_SIZE) == -1) {
      /* Undo this table's runs: it stays dirty as it was. */
      while (s->n > first_run)
        free (s->runs[--s->n].copy);
      errno = ENOMEM;
      return -1;
    }
    p = q;
  }
  mc_table_clean (t);
  return 0;
}

static int
compare_runs (const void *a, const void *b)
{
  const struct mc_run *ra = a, *rb = b;
  return ra->offset < rb->offset ? -1 : ra->offset > rb->offset;
}

int
mc_snapshot_write (struct mc_snapshot *s,
                   int (*pwrite_fn) (void *opaque, const void *buf,
                                     size_t len, uint64_t offset),
                   void *opaque)
{
  size_t i;

  if (s->n == 0)                /* qsort of NULL, even with 0 items, is UB */
    return 0;
  qsort (s->runs, s->n, sizeof *s->runs, compare_runs);
  for (i = 0; i < s->n; i++)
    if (pwrite_fn (opaque, s->runs[i].copy, s->runs[i].len,
                   s->runs[i].offset) == -1)
      return -1;
  return 0;
}

void
mc_snapshot_redirty (struct mc_snapshot *s)
{
  size_t i;

  for (i = 0; i < s->n; i++)
    mc_table_mark (s->runs[i].t, s->runs[i].offset - s->runs[i].t->offset,
                   s->runs[i].len);
}

static int
pin (struct mc_snapshot *s, struct mc_entry *e)
{
  if (s->npinned == s->apinned) {
    size_t na = s->apinned ? s->apinned * 2 : 16;
    struct mc_entry **nv = realloc (s->pinned, na * sizeof *nv);
    if (nv == NULL)
      return -1;
    s->pinned = nv;
    s->apinned = na;
  }
  e->pins++;
  s->pinned[s->npinned++] = e;
  return 0;
}

static int
snapshot_entry (struct mc_entry *e, void *opaque)
{
  struct mc_snapshot *s = opaque;

  /* Pin first: a failed copy leaves the entry dirty and pinned, which
   * the undo below handles like the others. */
  if (pin (s, e) == -1 || mc_snapshot_add (s, &e->t) == -1)
    return -1;
  return 0;
}

int
mc_snapshot_cache (struct mc_snapshot *s, struct metacache *mc)
{
  if (mc_for_each_dirty (mc, snapshot_entry, s) != 0) {
    mc_snapshot_redirty (s);
    mc_snapshot_unpin (s);
    errno = ENOMEM;
    return -1;
  }
  return 0;
}

void
mc_snapshot_unpin (struct mc_snapshot *s)
{
  size_t i;

  for (i = 0; i < s->npinned; i++)
    s->pinned[i]->pins--;
  s->npinned = 0;
}

void
mc_snapshot_free (struct mc_snapshot *s)
{
  size_t i;

  if (s == NULL)
    return;
  assert (s->npinned == 0);
  for (i = 0; i < s->n; i++)
    free (s->runs[i].copy);
  free (s->runs);
  free (s->pinned);
  free (s);
}
