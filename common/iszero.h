/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef COWBD_ISZERO_H
#define COWBD_ISZERO_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* True if the buffer holds only zero bytes.  After checking the first 16
 * bytes one by one, the buffer is compared with itself shifted by 16, which
 * lets memcmp run at full speed over the rest.
 */
static inline bool
is_zero (const void *buf, size_t size)
{
  const unsigned char *p = buf;
  size_t i, head = size < 16 ? size : 16;

  for (i = 0; i < head; i++)
    if (p[i])
      return false;
  return size <= 16 || memcmp (p, p + 16, size - 16) == 0;
}

#endif /* COWBD_ISZERO_H */
