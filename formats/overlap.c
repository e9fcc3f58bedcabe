/* SPDX-License-Identifier: BSD-3-Clause */
/* The metadata ranges of an image file: a sorted array of disjoint
 * ranges.  See overlap.h. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "overlap.h"

/* The index of the first range that ends after offset. */
static size_t
first_after (const struct overlap_set *s, uint64_t offset)
{
  size_t lo = 0, hi = s->n;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (s->r[mid].end <= offset)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

const struct overlap_range *
overlap_find (const struct overlap_set *s, uint64_t start, uint64_t len)
{
  size_t i;

  if (s->n == 0 || len == 0)
    return NULL;
  i = first_after (s, start);
  if (i < s->n && s->r[i].start < start + len)
    return &s->r[i];
  return NULL;
}

static int
grow (struct overlap_set *s)
{
  size_t cap = s->cap ? 2 * s->cap : 16;
  struct overlap_range *r;

  if (s->n < s->cap)
    return 0;
  r = realloc (s->r, cap * sizeof *r);
  if (r == NULL) {
    errno = ENOMEM;
    return -1;
  }
  s->r = r;
  s->cap = cap;
  return 0;
}

int
overlap_add (struct overlap_set *s, uint64_t start, uint64_t len,
             const char *what)
{
  uint64_t end = start + len;
  size_t i, j;

  if (len == 0)
    return 0;
  /* Ranges i .. j-1 overlap the new one: merge them into it.  Ranges
   * that only touch it stay apart, each with its name. */
  i = first_after (s, start);
  for (j = i; j < s->n && s->r[j].start < end; j++) {
    if (s->r[j].start <= start) {
      start = s->r[j].start;
      what = s->r[j].what;
    }
    if (s->r[j].end > end)
      end = s->r[j].end;
  }
  if (j == i && grow (s) == -1)
    return -1;
  if (j == i)
    memmove (&s->r[i + 1], &s->r[i], (s->n - i) * sizeof *s->r);
  else if (j > i + 1)
    memmove (&s->r[i + 1], &s->r[j], (s->n - j) * sizeof *s->r);
  s->n = s->n + 1 - (j - i);
  s->r[i] = (struct overlap_range) { start, end, what };
  return 0;
}

void
overlap_cut (struct overlap_set *s, uint64_t end)
{
  size_t i = first_after (s, end);

  if (i < s->n && s->r[i].start < end) {
    s->r[i].end = end;
    i++;
  }
  s->n = i;
}

void
overlap_free (struct overlap_set *s)
{
  free (s->r);
  *s = (struct overlap_set) { NULL, 0, 0 };
}
