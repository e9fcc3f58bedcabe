/* SPDX-License-Identifier: BSD-3-Clause */
#include <config.h>
#undef NDEBUG
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "iszero.h"

int
main (void)
{
  static char buf[4096];
  size_t len, pos;

  assert (is_zero (buf, 0));
  for (len = 1; len <= 64; len++) {
    assert (is_zero (buf, len));
    /* A single non-zero byte anywhere, including in the first 16 and in
     * the last position, is seen. */
    for (pos = 0; pos < len; pos++) {
      buf[pos] = 1;
      assert (!is_zero (buf, len));
      buf[pos] = 0;
    }
  }
  buf[sizeof buf - 1] = 1;
  assert (!is_zero (buf, sizeof buf));
  assert (is_zero (buf, sizeof buf - 1));
  printf ("iszero: ok\n");
  return 0;
}
