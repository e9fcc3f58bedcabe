/* SPDX-License-Identifier: BSD-3-Clause */
/* Alignment and rounding for power-of-two sizes.
 *
 * Every macro takes an alignment that must be a power of two.  ROUND_UP of a value within (align - 1) of UINT64_MAX
 * wraps: callers rounding untrusted values use round_up_checked instead.
 */
#ifndef COWBD_ROUNDING_H
#define COWBD_ROUNDING_H

#include <stdbool.h>
#include <stdint.h>

static inline bool
is_power_of_2 (uint64_t v)
{
  return v != 0 && (v & (v - 1)) == 0;
}

/* log2 of a power of two. */
static inline unsigned
log_2_bits (uint64_t v)
{
  return 63 - __builtin_clzll (v);
}

/* Each argument is used once, in an expression: no temporaries. */
#define IS_ALIGNED(v, align) \
  (((v) & ((__typeof__ (v))(align) - 1)) == 0)

#define ROUND_DOWN(v, align) \
  ((v) & ~((__typeof__ (v))(align) - 1))

/* align is evaluated twice: pass a constant or a plain variable. */
#define ROUND_UP(v, align) \
  (((v) + (__typeof__ (v))(align) - 1) & ~((__typeof__ (v))(align) - 1))

/* Rounds without wrapping: false if the result does not fit in 64 bits. */
static inline bool
round_up_checked (uint64_t v, uint64_t align, uint64_t *r)
{
  uint64_t t;
  if (__builtin_add_overflow (v, align - 1, &t))
    return false;
  *r = t & ~(align - 1);
  return true;
}

/* ceil (n / d) for any d > 0, without the n + d - 1 overflow.  Both
 * arguments are evaluated twice: pass plain values. */
#define DIV_ROUND_UP(n, d) \
  ((n) / (__typeof__ (n))(d) + ((n) % (__typeof__ (n))(d) != 0))

#endif /* COWBD_ROUNDING_H */
