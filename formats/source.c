/* SPDX-License-Identifier: BSD-3-Clause */
/* Opening a source (source.h): a URI through its driver, anything else
 * as a local file; and the helpers every source shares. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
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

bool
image_name_is_uri (const char *name)
{
  return source_is_uri (name);
}

/* What a host file that is neither a regular file nor a block device
 * is, for the refusal; NULL if it is one of those (or cannot be
 * stat'ed: the open's own error then says why). */
static const char *
bad_file_type (const char *filename)
{
  struct stat st;

  if (stat (filename, &st) == -1 || S_ISREG (st.st_mode) ||
      S_ISBLK (st.st_mode))
    return NULL;
  if (S_ISDIR (st.st_mode))
    return "a directory, not a regular file or block device";
  if (S_ISFIFO (st.st_mode))
    return "a FIFO, not a regular file or block device";
  if (S_ISSOCK (st.st_mode))
    return "a socket, not a regular file or block device";
  if (S_ISCHR (st.st_mode))
    return "a character device, not a regular file or block device";
  return "not a regular file or block device";
}

/* Opens a host file of an image.  Only regular files and block devices
 * are images: open(2) of a FIFO would block until a writer came (an
 * image naming a FIFO as its backing file would hang whoever opens it),
 * so the open does not block and the type is checked before any read.
 * -1 with errno set and *why the reason (a type, or strerror). */
static int
host_open (const char *filename, int flags, const char **why)
{
  int fd = open (filename, flags | O_NONBLOCK), fl;
  struct stat st;

  *why = NULL;
  if (fd >= 0 && fstat (fd, &st) == 0 &&
      (S_ISREG (st.st_mode) || S_ISBLK (st.st_mode)) &&
      (fl = fcntl (fd, F_GETFL)) != -1 &&
      fcntl (fd, F_SETFL, fl & ~O_NONBLOCK) != -1)
    return fd;
  if (fd >= 0)
    close (fd);
  if ((*why = bad_file_type (filename)) != NULL)
    errno = EINVAL;
  else
    *why = strerror (errno ? errno : EIO);
  return -1;
}

struct source *
source_open (const char *name, bool readonly, const struct source_opts *opts,
             const char **why)
{
  struct source *s;
  int fd;

  *why = NULL;
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
  fd = host_open (name, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC, why);
  if (fd == -1)
    return NULL;
  s = source_file_from_fd (fd);
  if (s == NULL) {
    close (fd);
    errno = ENOMEM;
    *why = strerror (ENOMEM);
  }
  return s;
}

int
source_pread_sparse (struct source *s, void *buf, size_t count,
                     uint64_t offset, uint64_t *copied)
{
  enum { CHUNK = 64 << 10, PAGE = SOURCE_SPARSE_PAGE };
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
      size_t page = (done + i) / PAGE;

      if (is_zero (tmp + i, m))
        continue;
      memcpy ((char *) buf + done + i, tmp + i, m);
      if (copied)
        copied[page / 64] |= UINT64_C (1) << (page % 64);
    }
    done += n;
  }
  free (tmp);
  return 0;
}
