/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef COWBD_MINMAX_H
#define COWBD_MINMAX_H

#define MIN(a, b) ({                            \
      __typeof__ (a) a_ = (a);                  \
      __typeof__ (b) b_ = (b);                  \
      a_ < b_ ? a_ : b_;                        \
    })

#define MAX(a, b) ({                            \
      __typeof__ (a) a_ = (a);                  \
      __typeof__ (b) b_ = (b);                  \
      a_ > b_ ? a_ : b_;                        \
    })

#endif /* COWBD_MINMAX_H */
