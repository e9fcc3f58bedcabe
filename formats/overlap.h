/* SPDX-License-Identifier: BSD-3-Clause */
/* Where an image's metadata lies in its file, to refuse a data write that
 * would land on it (overlap.c).  Not for use outside formats/.
 *
 * A table entry of a crafted or corrupted image may point a data cluster
 * at the header, the L1 table, an L2 table or a refcount structure; a
 * write through it would destroy the image.  qemu refuses such a write
 * ("Preventing invalid write on metadata") and marks the image corrupt;
 * so do we (cow.c, before every write to a host offset that came from a
 * table entry).  The set is a sorted array of disjoint byte ranges, built
 * at open and extended when a table is allocated; a lookup is a binary
 * search, off the allocation path (new clusters at the end of the file
 * are never metadata) and cheap on the in-place one.
 *
 * Ranges are only added, except past a point the file is cut at: a table
 * freed in the middle of the file stays in the set, which is harmless
 * because allocation appends and never hands its offset out again.
 * Callers serialise: the format's main lock.
 */
#ifndef COWBD_FORMATS_OVERLAP_H
#define COWBD_FORMATS_OVERLAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct overlap_range {
  uint64_t start, end;          /* [start, end) */
  const char *what;             /* of the first range merged in */
};

struct overlap_set {
  struct overlap_range *r;      /* sorted by start, disjoint */
  size_t n, cap;
};

/* Adds [start, start + len) named what (a static string); -1 (ENOMEM,
 * no message) if memory runs out. */
int overlap_add (struct overlap_set *s, uint64_t start, uint64_t len,
                 const char *what);
/* Forgets everything at or past end (the file was cut there). */
void overlap_cut (struct overlap_set *s, uint64_t end);
/* The metadata [start, start + len) overlaps, or NULL. */
const struct overlap_range *overlap_find (const struct overlap_set *s,
                                          uint64_t start, uint64_t len);
void overlap_free (struct overlap_set *s);

#endif /* COWBD_FORMATS_OVERLAP_H */
