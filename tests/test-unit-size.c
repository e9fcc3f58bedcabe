/* SPDX-License-Identifier: BSD-3-Clause */
#include <config.h>
#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "size.h"

static uint64_t
parse_ok (const char *s)
{
  uint64_t v = 0;
  assert (size_parse (s, &v) == 0);
  return v;
}

static void
parse_bad (const char *s, int err)
{
  uint64_t v;
  errno = 0;
  assert (size_parse (s, &v) == -1);
  assert (errno == err);
}

int
main (void)
{
  char buf[32];

  assert (parse_ok ("0") == 0);
  assert (parse_ok ("512") == 512);
  assert (parse_ok ("512b") == 512);
  assert (parse_ok ("64k") == 65536 && parse_ok ("64K") == 65536);
  assert (parse_ok ("10M") == 10ULL << 20);
  assert (parse_ok ("1G") == 1ULL << 30);
  assert (parse_ok ("1T") == 1ULL << 40);
  assert (parse_ok ("7E") == UINT64_C (7) << 60);
  parse_bad ("", EINVAL);
  parse_bad ("-1", EINVAL);
  parse_bad ("1X", EINVAL);
  parse_bad ("1KB", EINVAL);
  parse_bad ("8E", ERANGE);
  parse_bad ("99999999999999999999", ERANGE);
  parse_bad ("9223372036854775808", ERANGE);

  assert (strcmp (size_format (512, buf, sizeof buf), "512 B") == 0);
  assert (strcmp (size_format (1 << 30, buf, sizeof buf), "1 GiB") == 0);
  assert (strcmp (size_format (3 << 19, buf, sizeof buf), "1.5 MiB") == 0);
  /* qemu-img's rule: 1000 KiB or more is shown in MiB. */
  assert (strcmp (size_format (1000 << 10, buf, sizeof buf), "0.977 MiB")
          == 0);
  assert (strcmp (size_format (1023, buf, sizeof buf), "0.999 KiB") == 0);
  assert (strcmp (size_format (999, buf, sizeof buf), "999 B") == 0);
  assert (strcmp (size_format (UINT64_MAX, buf, sizeof buf), "16 EiB") == 0);
  printf ("size: ok\n");
  return 0;
}
