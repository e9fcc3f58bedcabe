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
  /* Fractions, as qemu-img 7.2 reads them (its create was the oracle). */
  assert (parse_ok ("1.5M") == 1572864);
  assert (parse_ok ("0.5G") == 1ULL << 29);
  assert (parse_ok ("1.5T") == 3ULL << 39);
  assert (parse_ok ("1.5k") == 1536);
  assert (parse_ok ("0.1K") == 102);          /* 102.4 rounds down */
  assert (parse_ok ("0.9999K") == 1024);      /* 1023.8976 rounds up */
  assert (parse_ok ("0.00048828125K") == 1);  /* exactly 0.5 rounds up */
  assert (parse_ok ("1.") == 1 && parse_ok ("1.K") == 1024);
  assert (parse_ok ("1.0") == 1 && parse_ok ("1.0b") == 1);
  assert (parse_ok ("0x10") == 16 && parse_ok ("0x1K") == 1024);
  assert (parse_ok ("7.5E") == UINT64_C (15) << 59);
  parse_bad ("1.5", EINVAL);
  parse_bad ("1.5b", EINVAL);
  parse_bad (".5M", EINVAL);
  parse_bad ("1e3", EINVAL);
  parse_bad ("1.5e3K", EINVAL);
  parse_bad ("1..5K", EINVAL);
  parse_bad ("0x1.5K", EINVAL);
  parse_bad ("-1.5M", EINVAL);
  parse_bad ("1K ", EINVAL);
  parse_bad ("8.0E", ERANGE);
  parse_bad ("16.5E", ERANGE);
  assert (parse_ok ("7.99999999E") < INT64_MAX);
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
