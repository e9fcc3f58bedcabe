/* SPDX-License-Identifier: BSD-3-Clause */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "size.h"

int
size_parse (const char *str, uint64_t *size)
{
  static const char suffixes[] = "bKMGTPE";
  const char *p;
  char *end;
  unsigned long long v;
  unsigned shift = 0;

  while (isspace ((unsigned char) *str))
    str++;
  if (!isdigit ((unsigned char) *str))
    goto invalid;
  errno = 0;
  v = strtoull (str, &end, 10);
  if (errno == ERANGE)
    return -1;
  if (*end) {
    p = strchr (suffixes, toupper ((unsigned char) *end) == 'B' ? 'b'
                : toupper ((unsigned char) *end));
    if (p == NULL || end[1] != '\0')
      goto invalid;
    shift = 10 * (unsigned) (p - suffixes);
  }
  if (shift && v > (unsigned long long) (INT64_MAX >> shift)) {
    errno = ERANGE;
    return -1;
  }
  if (v > INT64_MAX) {
    errno = ERANGE;
    return -1;
  }
  *size = (uint64_t) v << shift;
  return 0;

 invalid:
  errno = EINVAL;
  return -1;
}

char *
size_format (uint64_t size, char *buf, size_t len)
{
  static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB",
                                       "PiB", "EiB" };
  unsigned i = 0;
  uint64_t div = 1;

  /* As qemu-img prints sizes: the next unit up as soon as the number
   * would reach 1000 ("0.977 MiB", never "1000 KiB"). */
  while (i < sizeof units / sizeof units[0] - 1 &&
         (double) size / (double) div >= 1000.0) {
    div <<= 10;
    i++;
  }
  snprintf (buf, len, "%0.3g %s", (double) size / (double) div, units[i]);
  return buf;
}
