/* SPDX-License-Identifier: BSD-3-Clause */
/* Fixed-layout on-disk headers as tables of fields: see header.h. */
#include <config.h>

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "byte-swapping.h"
#include "header.h"

static uint64_t
load (const uint8_t *p, unsigned bytes, enum hdr_order o)
{
  switch (bytes) {
  case 1: return p[0];
  case 4: return o == HDR_BE ? be32_load (p) : le32_load (p);
  case 8: return o == HDR_BE ? be64_load (p) : le64_load (p);
  }
  abort ();
}

static void
store (uint8_t *p, unsigned bytes, enum hdr_order o, uint64_t v)
{
  switch (bytes) {
  case 1: p[0] = (uint8_t) v; return;
  case 4:
    if (o == HDR_BE)
      be32_store (p, (uint32_t) v);
    else
      le32_store (p, (uint32_t) v);
    return;
  case 8:
    if (o == HDR_BE)
      be64_store (p, v);
    else
      le64_store (p, v);
    return;
  }
  abort ();
}

void
hdr_decode (const struct hdr_field *f, size_t n, enum hdr_order o,
            const uint8_t *b, void *s)
{
  size_t i;

  for (i = 0; i < n; i++) {
    uint64_t v = load (b + f[i].at, f[i].bytes, o);
    uint8_t v8 = (uint8_t) v;
    uint32_t v32 = (uint32_t) v;
    char *m = (char *) s + f[i].member;

    if (f[i].bytes == 1)
      memcpy (m, &v8, 1);
    else if (f[i].bytes == 4)
      memcpy (m, &v32, 4);
    else
      memcpy (m, &v, 8);
  }
}

void
hdr_encode (const struct hdr_field *f, size_t n, enum hdr_order o,
            const void *s, uint8_t *b)
{
  size_t i;

  for (i = 0; i < n; i++) {
    const char *m = (const char *) s + f[i].member;
    uint8_t v8;
    uint32_t v32;
    uint64_t v;

    if (f[i].bytes == 1) {
      memcpy (&v8, m, 1);
      v = v8;
    }
    else if (f[i].bytes == 4) {
      memcpy (&v32, m, 4);
      v = v32;
    }
    else
      memcpy (&v, m, 8);
    store (b + f[i].at, f[i].bytes, o, v);
  }
}

bool
hdr_has_magic (const uint8_t *buf, size_t len, enum hdr_order o,
               uint32_t magic)
{
  return len >= 4 && load (buf, 4, o) == magic;
}
