/* SPDX-License-Identifier: BSD-3-Clause */
#include <config.h>
#undef NDEBUG
#include <assert.h>
#include <stdint.h>
#include <stdio.h>

#include "checked-overflow.h"

int
main (void)
{
  uint64_t r;
  uint32_t r32;

  assert (!ADD_OVERFLOW (UINT64_MAX - 1, (uint64_t) 1, &r) && r == UINT64_MAX);
  assert (ADD_OVERFLOW (UINT64_MAX, (uint64_t) 1, &r));
  assert (MUL_OVERFLOW ((uint32_t) 65536, (uint32_t) 65536, &r32));
  assert (!MUL_OVERFLOW ((uint64_t) 65536, (uint64_t) 65536, &r) &&
          r == 1ULL << 32);

  /* [offset, offset+len) within [0, limit). */
  assert (!RANGE_OUTSIDE ((uint64_t) 0, (uint64_t) 10, (uint64_t) 10));
  assert (RANGE_OUTSIDE ((uint64_t) 1, (uint64_t) 10, (uint64_t) 10));
  assert (!RANGE_OUTSIDE ((uint64_t) 10, (uint64_t) 0, (uint64_t) 10));
  assert (RANGE_OUTSIDE ((uint64_t) 11, (uint64_t) 0, (uint64_t) 10));
  assert (RANGE_OUTSIDE (UINT64_MAX, (uint64_t) 2, UINT64_MAX));
  printf ("checked-overflow: ok\n");
  return 0;
}
