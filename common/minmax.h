/* SPDX-License-Identifier: BSD-3-Clause */
/* MIN and MAX evaluating each argument once.  The temporaries get unique
 * names (__COUNTER__) so that nested uses do not shadow each other. */
#ifndef COWBD_MINMAX_H
#define COWBD_MINMAX_H

#define MINMAX_CAT_(a, b) a##b
#define MINMAX_CAT(a, b) MINMAX_CAT_ (a, b)

#define MINMAX_(a, b, op, n) ({                         \
      __typeof__ (a) MINMAX_CAT (mm_a_, n) = (a);       \
      __typeof__ (b) MINMAX_CAT (mm_b_, n) = (b);       \
      MINMAX_CAT (mm_a_, n) op MINMAX_CAT (mm_b_, n)    \
        ? MINMAX_CAT (mm_a_, n) : MINMAX_CAT (mm_b_, n); \
    })

#define MIN(a, b) MINMAX_ ((a), (b), <, __COUNTER__)
#define MAX(a, b) MINMAX_ ((a), (b), >, __COUNTER__)

#endif /* COWBD_MINMAX_H */
