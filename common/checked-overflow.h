/* SPDX-License-Identifier: BSD-3-Clause */
/* Overflow-checked arithmetic for values read from disks and the wire.
 * Each returns true when the result overflowed (and *r is then garbage).
 */
#ifndef COWBD_CHECKED_OVERFLOW_H
#define COWBD_CHECKED_OVERFLOW_H

#define ADD_OVERFLOW(a, b, r) __builtin_add_overflow ((a), (b), (r))
#define MUL_OVERFLOW(a, b, r) __builtin_mul_overflow ((a), (b), (r))

/* True when [offset, offset + length) does not fit within [0, limit). */
#define RANGE_OUTSIDE(offset, length, limit) ({                         \
      __typeof__ (offset) end_;                                         \
      ADD_OVERFLOW ((offset), (length), &end_) || end_ > (limit);       \
    })

#endif /* COWBD_CHECKED_OVERFLOW_H */
