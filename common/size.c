/* SPDX-License-Identifier: BSD-3-Clause */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "size.h"

/* The suffix's multiplier, or 0 when c is not a suffix. */
static uint64_t
size_suffix (char c)
{
  static const char suffixes[] = "BKMGTPE";
  const char *p;

  if (c == '\0')
    return 0;
  p = strchr (suffixes, toupper ((unsigned char) c));
  return p ? UINT64_C (1) << (10 * (p - suffixes)) : 0;
}

/* The digits after a decimal point, from the point at *end: returns the
 * fraction as a 0.64 fixed-point number (*whole set when it rounds to
 * 1), and moves *end past the digits.  "1." has an empty fraction; an
 * exponent is refused, as qemu does (returns -1). */
static int
size_fraction (char **end, uint64_t *frac, bool *whole)
{
  char *f = *end, *e;
  double d;

  *frac = 0;
  *whole = false;
  errno = 0;
  d = strtod (f, &e);
  if (e == f || errno) {       /* "." alone: nothing after the point */
    *end = f + 1;
    return 0;
  }
  if (memchr (f, 'e', (size_t) (e - f)) || memchr (f, 'E', (size_t) (e - f)))
    return -1;
  if (d >= 1.0)
    *whole = true;
  else
    *frac = (uint64_t) (d * 0x1p64);
  *end = e;
  return 0;
}

/* val + frac/2^64, times mul, rounded half up; -1 when it passes
 * INT64_MAX. */
static int
size_scale (uint64_t val, uint64_t frac, bool whole, uint64_t mul,
            uint64_t *size)
{
  unsigned __int128 r = (unsigned __int128) val * mul;
  unsigned __int128 f = (unsigned __int128) frac * mul;

  r += (f >> 64) + ((uint64_t) f >> 63);
  if (whole)
    r += mul;
  if (r > INT64_MAX)
    return -1;
  *size = (uint64_t) r;
  return 0;
}

int
size_parse (const char *str, uint64_t *size)
{
  char *end;
  uint64_t val, frac = 0, mul;
  bool whole = false;

  while (isspace ((unsigned char) *str))
    str++;
  if (!isdigit ((unsigned char) *str))
    goto invalid;
  errno = 0;
  val = strtoull (str, &end, 10);
  if (val == 0 && (*end == 'x' || *end == 'X'))
    val = strtoull (str, &end, 16);
  if (errno == ERANGE)
    return -1;
  if (*end == '.' && (str[1] == 'x' || str[1] == 'X'))
    goto invalid;
  if (*end == '.' && size_fraction (&end, &frac, &whole) == -1)
    goto invalid;
  mul = size_suffix (*end);
  if (mul)
    end++;
  if (*end || (mul <= 1 && (frac || whole)))
    goto invalid;
  if (size_scale (val, frac, whole, mul ? mul : 1, size) == -1) {
    errno = ERANGE;
    return -1;
  }
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
