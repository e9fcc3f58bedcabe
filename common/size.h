/* SPDX-License-Identifier: BSD-3-Clause */
/* Sizes as people type them ("64K", "10G") and as we print them. */
#ifndef COWBD_SIZE_H
#define COWBD_SIZE_H

#include <stddef.h>
#include <stdint.h>

/* Parses a size as qemu-img 7.2 accepts it: a decimal number (or 0x hex)
 * with an optional binary suffix b (bytes), k/K, M, G, T, P, E (powers of
 * 1024).  A decimal number may have a fraction ("1.5M", "0.5G") when a
 * suffix above b follows; the product is rounded to the nearest byte
 * (half up) as qemu does.  Returns 0, or -1 with errno EINVAL (not a size:
 * a sign, an exponent, a fraction without a suffix) or ERANGE (above
 * INT64_MAX).
 */
int size_parse (const char *str, uint64_t *size);

/* Formats a size the way qemu-img info does ("10 GiB", "1.5 MiB",
 * "512 B") into buf, and returns buf. */
char *size_format (uint64_t size, char *buf, size_t len);

#endif /* COWBD_SIZE_H */
