/* SPDX-License-Identifier: BSD-3-Clause */
/* Opening a source (source.h): a URI through its driver, anything else
 * as a local file; and the helpers every source shares. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "iszero.h"
#include "minmax.h"
#include "source.h"

bool
source_is_uri (const char *name)
{
  static const char *const schemes[] = {
    "nbd://", "nbd+unix://", "nbd+vsock://",
    "nbds://", "nbds+unix://", "nbds+vsock://",
  };
  size_t i;

  for (i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
    if (strncmp (name, schemes[i], strlen (schemes[i])) == 0)
      return true;
  return false;
}

struct source *
source_open (const char *name, bool readonly, const struct source_opts *opts)
{
  struct source *s;
  int fd;

  if (source_is_uri (name)) {
    if (!readonly)
      return error_set (EROFS, "%s: a remote image can only be opened "
                        "read-only", name), NULL;
#ifdef HAVE_LIBNBD
    return source_nbd_open (name, opts);
#else
    (void) opts;
    return error_set (ENOTSUP, "%s: remote images need libnbd, which "
                      "this build lacks", name), NULL;
#endif
  }
  fd = open (name, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (fd == -1)
    return NULL;
  s = source_file_from_fd (fd);
  if (s == NULL) {
    close (fd);
    errno = ENOMEM;
  }
  return s;
}

int
source_pread_sparse (struct source *s, void *buf, size_t count,
                     uint64_t offset)
{
  enum { CHUNK = 64 << 10, PAGE = 4096 };
  uint8_t *tmp = malloc (CHUNK);
  size_t done = 0, i;

  if (tmp == NULL)
    return -1;
  /* Through a small buffer: only the pages that are not all zero are
   * copied in, so the others of buf are never touched. */
  while (done < count) {
    size_t n = MIN (count - done, (size_t) CHUNK);
    if (source_pread (s, tmp, n, offset + done) == -1) {
      int e = errno;
      free (tmp);
      errno = e;
      return -1;
    }
    for (i = 0; i < n; i += PAGE) {
      size_t m = MIN (n - i, (size_t) PAGE);
      if (!is_zero (tmp + i, m))
        memcpy ((char *) buf + done + i, tmp + i, m);
    }
    done += n;
  }
  free (tmp);
  return 0;
}
