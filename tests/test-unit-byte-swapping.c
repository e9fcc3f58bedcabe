/* SPDX-License-Identifier: BSD-3-Clause */
#include <config.h>
#undef NDEBUG
#include <assert.h>
#include <stdio.h>

#include "byte-swapping.h"

int
main (void)
{
  unsigned char b[10] = { 0 };

  /* Unaligned store and load, both byte orders. */
  le64_store (b + 1, 0x0102030405060708ULL);
  assert (b[1] == 0x08 && b[8] == 0x01);
  assert (le64_load (b + 1) == 0x0102030405060708ULL);
  be64_store (b + 1, 0x0102030405060708ULL);
  assert (b[1] == 0x01 && b[8] == 0x08);
  assert (be64_load (b + 1) == 0x0102030405060708ULL);
  be32_store (b + 3, 0xdeadbeef);
  assert (b[3] == 0xde && be32_load (b + 3) == 0xdeadbeef);
  assert (le32_load (b + 3) == 0xefbeadde);
  le16_store (b, 0x1234);
  assert (b[0] == 0x34 && le16_load (b) == 0x1234 && be16_load (b) == 0x3412);
  printf ("byte-swapping: ok\n");
  return 0;
}
