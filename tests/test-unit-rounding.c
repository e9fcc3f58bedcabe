/* SPDX-License-Identifier: BSD-3-Clause */
#include <config.h>
#undef NDEBUG
#include <assert.h>
#include <stdint.h>
#include <stdio.h>

#include "rounding.h"

int
main (void)
{
  uint64_t r;

  assert (is_power_of_2 (1) && is_power_of_2 (4096) &&
          is_power_of_2 (1ULL << 63));
  assert (!is_power_of_2 (0) && !is_power_of_2 (3) && !is_power_of_2 (4097));
  assert (log_2_bits (1) == 0 && log_2_bits (65536) == 16 &&
          log_2_bits (1ULL << 63) == 63);

  assert (ROUND_UP ((uint64_t) 0, 512) == 0);
  assert (ROUND_UP ((uint64_t) 1, 512) == 512);
  assert (ROUND_UP ((uint64_t) 512, 512) == 512);
  assert (ROUND_DOWN ((uint64_t) 1023, 512) == 512);
  assert (IS_ALIGNED ((uint64_t) 65536, 65536));
  assert (!IS_ALIGNED ((uint64_t) 65537, 65536));

  /* Near 4 GiB with 64 KiB clusters, where a 32-bit intermediate wraps. */
  assert (DIV_ROUND_UP ((uint64_t) 4 << 30, (uint64_t) 65536) == 65536);
  assert (DIV_ROUND_UP (((uint64_t) 4 << 30) + 1, (uint64_t) 65536) == 65537);
  assert (DIV_ROUND_UP (UINT64_MAX, (uint64_t) 2) == 1ULL << 63);
  assert (DIV_ROUND_UP (UINT64_MAX, (uint64_t) 3) == UINT64_MAX / 3);

  assert (round_up_checked (100, 64, &r) && r == 128);
  assert (!round_up_checked (UINT64_MAX - 10, 64, &r));
  assert (round_up_checked (UINT64_MAX - 63, 64, &r) && r == UINT64_MAX - 63);
  printf ("rounding: ok\n");
  return 0;
}
