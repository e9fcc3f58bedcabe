/* SPDX-License-Identifier: BSD-3-Clause */
/* I/O on the host file under an image: full-length transfers, zeroing,
 * hole punching, hole status.  No knowledge of any format.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <unistd.h>
#ifdef HAVE_LINUX_FALLOC_H
#include <linux/falloc.h>
#endif
#ifdef HAVE_LINUX_FS_H
#include <linux/fs.h>
#endif

#include "internal.h"
#include "source.h"
#include "iszero.h"
#include "minmax.h"
#include "rounding.h"

int
host_pread (int fd, void *buf, size_t count, uint64_t offset)
{
  char *p = buf;

  while (count > 0) {
    ssize_t r = pread (fd, p, count, (off_t) offset);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (r == 0) {               /* past end of file: zeros */
      memset (p, 0, count);
      return 0;
    }
    p += r;
    count -= (size_t) r;
    offset += (uint64_t) r;
  }
  return 0;
}

int
host_pwrite (int fd, const void *buf, size_t count, uint64_t offset)
{
  const char *p = buf;

  while (count > 0) {
    ssize_t r = pwrite (fd, p, count, (off_t) offset);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += r;
    count -= (size_t) r;
    offset += (uint64_t) r;
  }
  return 0;
}

/* The fallocate modes of host_punch_hole and host_write_zeroes_fast; 0
 * where the build has none. */
#if defined (HAVE_FALLOCATE) && defined (FALLOC_FL_PUNCH_HOLE)
#define PUNCH_MODE FALLOC_FL_PUNCH_HOLE
#else
#define PUNCH_MODE 0
#endif
#if defined (HAVE_FALLOCATE) && defined (FALLOC_FL_ZERO_RANGE)
#define ZERO_MODE FALLOC_FL_ZERO_RANGE
#else
#define ZERO_MODE 0
#endif

/* fallocate with mode over [offset, offset + count), keeping the size;
 * EOPNOTSUPP where the filesystem or the build cannot. */
static int
falloc_range (int fd, int mode, uint64_t count, uint64_t offset)
{
  if (mode == 0) {
    errno = EOPNOTSUPP;
    return -1;
  }
  if (count == 0)
    return 0;
#ifdef HAVE_FALLOCATE
  if (fallocate (fd, mode | FALLOC_FL_KEEP_SIZE, (off_t) offset,
                 (off_t) count) == 0)
    return 0;
  if (errno == ENOSYS || errno == ENOTTY)
    errno = EOPNOTSUPP;
#endif
  return -1;
}

int
host_punch_hole (int fd, uint64_t count, uint64_t offset)
{
  return falloc_range (fd, PUNCH_MODE, count, offset);
}

/* Plain writes of a zero buffer, in chunks of at most 1 MiB. */
static int
write_zero_buffer (int fd, uint64_t count, uint64_t offset)
{
  size_t chunk = MIN (count, (uint64_t) 1 << 20);
  char *zeros = calloc (1, chunk ? chunk : 1);

  if (zeros == NULL)
    return -1;
  while (count > 0) {
    size_t n = MIN (count, (uint64_t) chunk);
    if (host_pwrite (fd, zeros, n, offset) == -1) {
      int e = errno;
      free (zeros);
      errno = e;
      return -1;
    }
    count -= n;
    offset += n;
  }
  free (zeros);
  return 0;
}

int
host_write_zeroes_fast (int fd, uint64_t count, uint64_t offset)
{
  return falloc_range (fd, ZERO_MODE, count, offset);
}

int
host_write_zeroes (int fd, uint64_t count, uint64_t offset, bool may_punch)
{
  if (count == 0)
    return 0;
  if (may_punch && host_punch_hole (fd, count, offset) == 0)
    return 0;
  if (host_write_zeroes_fast (fd, count, offset) == 0)
    return 0;
  return write_zero_buffer (fd, count, offset);
}

int
host_sync (int fd)
{
  while (fdatasync (fd) == -1) {
    if (errno != EINTR)
      return -1;
  }
  return 0;
}

int
host_sync_image (struct image *img)
{
  if (img->main_lock)
    cow_assert_not_held (img->main_lock);
  if (source_sync (img->src) == 0)
    return 0;
  sticky_set (img);
  return -1;
}

int
host_file_size (int fd, uint64_t *size)
{
  struct stat st;

  if (fstat (fd, &st) == -1)
    return -1;
#ifdef BLKGETSIZE64
  if (S_ISBLK (st.st_mode)) {
    uint64_t s;
    if (ioctl (fd, BLKGETSIZE64, &s) == -1)
      return -1;
    *size = s;
    return 0;
  }
#endif
  *size = (uint64_t) st.st_size;
  return 0;
}

int
host_data_status (int fd, uint64_t offset, uint64_t count, bool quick,
                  bool *is_data, uint64_t *len)
{
  off_t data, hole;

  data = lseek (fd, (off_t) offset, SEEK_DATA);
  if (data == -1) {
    if (errno == ENXIO) {       /* no data from offset to EOF */
      *is_data = false;
      *len = count;
      return 0;
    }
    if (errno == EINVAL || errno == EOPNOTSUPP) {
      *is_data = true;          /* the filesystem cannot tell */
      *len = count;
      return 0;
    }
    return -1;
  }
  if ((uint64_t) data > offset) {
    *is_data = false;
    *len = MIN (count, (uint64_t) data - offset);
    return 0;
  }
  if (quick) {
    *is_data = true;
    *len = count;
    return 0;
  }
  hole = lseek (fd, (off_t) offset, SEEK_HOLE);
  if (hole == -1) {
    if (errno != ENXIO)
      return -1;
    hole = (off_t) (offset + count);
  }
  *is_data = true;
  *len = MIN (count, (uint64_t) hole - offset);
  if (*len == 0)                /* racing truncate: call it data */
    *len = count;
  return 0;
}

/* On tmpfs a file's block count is its pages, exactly: as many as its
 * length needs means no page is missing, so no hole (pages fallocated
 * past the end could hide one; a hole then taken for data still reads
 * as zeros, copied or not).  One fstat instead of a SEEK_HOLE that walks
 * every page (~10 ms per GiB, and it holds the file's position lock
 * meanwhile, which every other lseek of the file waits for). */
static bool
counted_dense (int fd, bool in_memory)
{
  struct stat st;

  return in_memory && fstat (fd, &st) == 0 && S_ISREG (st.st_mode) &&
    (uint64_t) st.st_blocks * 512 >= (uint64_t) st.st_size;
}

bool
host_is_dense (int fd, uint64_t start, bool in_memory)
{
  uint64_t size;
  off_t hole;

  if (counted_dense (fd, in_memory))
    return true;
  if (host_file_size (fd, &size) == -1)
    return false;
  if (start >= size)
    return true;
  hole = lseek (fd, (off_t) start, SEEK_HOLE);
  return hole != -1 && (uint64_t) hole >= size;
}

/* Preallocation happens in chunks so that a progress callback can show
 * the rate and cancel between two of them (Ctrl-C in cowbd-img create). */
#define PREALLOC_CHUNK (64ULL << 20)

int
host_preallocate (int fd, uint64_t offset, uint64_t length, bool write_zeros,
                  int (*progress) (void *, uint64_t, uint64_t),
                  void *opaque)
{
  uint64_t done = 0;
  char *zeros = NULL;

  if (write_zeros && (zeros = calloc (1, 1 << 20)) == NULL)
    return -1;
  while (done < length) {
    uint64_t n = MIN (length - done, PREALLOC_CHUNK), i;
    int r;

    if (progress && progress (opaque, done, length) != 0) {
      free (zeros);
      errno = ECANCELED;
      return -1;
    }
    /* Reserve the blocks first: one extent where the filesystem can. */
    r = posix_fallocate (fd, (off_t) (offset + done), (off_t) n);
    if (r != 0 && !(write_zeros && r == EOPNOTSUPP)) {
      free (zeros);
      errno = r;
      return -1;
    }
    for (i = 0; write_zeros && i < n; i += 1 << 20) {
      size_t m = (size_t) MIN (n - i, (uint64_t) 1 << 20);
      if (host_pwrite (fd, zeros, m, offset + done + i) == -1) {
        int e = errno;
        free (zeros);
        errno = e;
        return -1;
      }
    }
    done += n;
  }
  free (zeros);
  if (progress && progress (opaque, length, length) != 0) {
    errno = ECANCELED;
    return -1;
  }
  return 0;
}

/* Never written: pages of it that are read map the kernel's zero page. */
uint8_t host_zeros[HOST_ZEROS_SIZE];

/* copy_file_range errors that only say this pair of files cannot be
 * copied between in the kernel: the caller copies through memory. */
static bool
copy_unsupported (int e)
{
  return e == EXDEV || e == EINVAL || e == EOPNOTSUPP || e == ENOSYS ||
         e == EBADF;
}

int
host_copy_range (int fd_in, uint64_t off_in, int fd_out, uint64_t off_out,
                 uint64_t count)
{
  bool started = false;

  while (count > 0) {
    loff_t in = (loff_t) off_in, out = (loff_t) off_out;
    ssize_t r = copy_file_range (fd_in, &in, fd_out, &out,
                                 (size_t) MIN (count, (uint64_t) 1 << 30),
                                 0);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      if (!started && copy_unsupported (errno))
        errno = ENOTSUP;
      return -1;
    }
    if (r == 0)                 /* past the source's end: zeros, which the
                                   destination's hole already reads as */
      return 0;
    started = true;
    off_in += (uint64_t) r;
    off_out += (uint64_t) r;
    count -= (uint64_t) r;
  }
  return 0;
}

int
host_pwritev (int fd, struct iovec *iov, int iovcnt, uint64_t offset)
{
  while (iovcnt > 0) {
    ssize_t r = pwritev (fd, iov, iovcnt > IOV_MAX ? IOV_MAX : iovcnt,
                         (off_t) offset);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    offset += (uint64_t) r;
    /* Step over what was written, possibly part of one buffer. */
    while (iovcnt > 0 && (size_t) r >= iov->iov_len) {
      r -= (ssize_t) iov->iov_len;
      iov++;
      iovcnt--;
    }
    if (iovcnt > 0) {
      iov->iov_base = (char *) iov->iov_base + r;
      iov->iov_len -= (size_t) r;
    }
  }
  return 0;
}

/* ---- I/O that does not wait --------------------------------------------- */

#define TMPFS_MAGIC_ 0x01021994
#define RAMFS_MAGIC_ 0x858458f6

void
host_nowait_init (struct image *img)
{
  struct statfs sf;

  img->host_in_memory = img->fd >= 0 && fstatfs (img->fd, &sf) == 0 &&
    ((unsigned long) sf.f_type == TMPFS_MAGIC_ ||
     (unsigned long) sf.f_type == RAMFS_MAGIC_);
#ifdef RWF_NOWAIT
  img->host_read_nowait = img->fd >= 0 && !img->host_in_memory;
  img->host_write_nowait = img->host_read_nowait && !img->readonly;
#endif
}

/* One RWF_NOWAIT transfer: the whole count or EAGAIN.  A filesystem that
 * refuses the flag is not asked again. */
static int
nowait_io (struct image *img, bool write, void *buf, size_t count,
           uint64_t offset)
{
#ifdef RWF_NOWAIT
  bool *supported = write ? &img->host_write_nowait : &img->host_read_nowait;
  struct iovec iov = { buf, count };
  ssize_t r;

  if (__atomic_load_n (supported, __ATOMIC_RELAXED)) {
    r = write ? pwritev2 (img->fd, &iov, 1, (off_t) offset, RWF_NOWAIT)
              : preadv2 (img->fd, &iov, 1, (off_t) offset, RWF_NOWAIT);
    if (r == (ssize_t) count)
      return 0;
    if (r == -1 && errno == EOPNOTSUPP)
      __atomic_store_n (supported, false, __ATOMIC_RELAXED);
    /* A short read may be the end of the file: let a thread sort it out.
     * A short write has written part of the same bytes a thread will
     * write again. */
  }
#endif
  errno = EAGAIN;
  return -1;
}

int
host_pread_nowait (struct image *img, void *buf, size_t count,
                   uint64_t offset)
{
  if (img->host_in_memory)
    return host_pread (img->fd, buf, count, offset);
  return nowait_io (img, false, buf, count, offset);
}

int
host_pwrite_nowait (struct image *img, const void *buf, size_t count,
                    uint64_t offset)
{
  if (img->host_in_memory)
    return host_pwrite (img->fd, buf, count, offset);
  return nowait_io (img, true, (void *) buf, count, offset);
}

/* ---- the file's length ----------------------------------------------- */

/* The file grows in steps of this much (or a cluster, if larger). */
#define GROW_STEP (1ULL << 20)

int
host_grow_file (struct image *img, uint64_t *length, uint64_t end,
                uint64_t cluster_size)
{
  uint64_t step = MAX (GROW_STEP, cluster_size), target;
  /* Half a step ahead: the allocation that grows the file then still lies
   * in the length grown before, which a flush since has made durable, so
   * its flush may take one sync (cow.c, "One sync or two").  Optional:
   * if it fails, only what end needs counts. */
  uint64_t ahead = end <= UINT64_MAX - step / 2 ? end + step / 2 : end;

  if (ahead <= *length)
    return 0;
  if (!round_up_checked (ahead, step, &target) || target > INT64_MAX) {
    if (end <= *length)
      return 0;
    if (!round_up_checked (end, step, &target) || target > INT64_MAX)
      return error_file (img, EFBIG, "the file would grow past 2^63 bytes");
  }
  /* The new space is a hole until written (and parts of new clusters
   * stay one). */
  host_may_have_holes (img);
  if (ftruncate (img->fd, (off_t) target) == -1) {
    if (end <= *length)
      return 0;
    return error_syscall (img, "growing the file");
  }
  __atomic_store_n (&img->grown_from, *length, __ATOMIC_RELAXED);
  __atomic_add_fetch (&img->length_changes, 1, __ATOMIC_RELAXED);
  *length = target;
  return 0;
}

int
host_trim_file (struct image *img, uint64_t *length, uint64_t end)
{
  if (*length <= end)
    return 0;
  if (ftruncate (img->fd, (off_t) end) == -1)
    return error_syscall (img, "truncate");
  __atomic_add_fetch (&img->length_changes, 1, __ATOMIC_RELAXED);
  *length = end;
  return 0;
}


/* ---- the local file as a source (source.h) ------------------------------ */

static int
file_pread (struct source *s, void *buf, size_t count, uint64_t offset)
{
  return host_pread (s->fd, buf, count, offset);
}

static int
file_pwrite (struct source *s, const void *buf, size_t count,
             uint64_t offset)
{
  return host_pwrite (s->fd, buf, count, offset);
}

static int
file_sync (struct source *s)
{
  return host_sync (s->fd);
}

static int
file_size (struct source *s, uint64_t *size)
{
  return host_file_size (s->fd, size);
}

static int
file_data_status (struct source *s, uint64_t offset, uint64_t count,
                  bool quick, bool *is_data, uint64_t *len)
{
  return host_data_status (s->fd, offset, count, quick, is_data, len);
}

static int
file_close (struct source *s)
{
  int r = close (s->fd);

  free (s);
  return r;
}

static const struct source_ops file_ops = {
  .name = "file",
  .pread = file_pread,
  .pwrite = file_pwrite,
  .sync = file_sync,
  .size = file_size,
  .data_status = file_data_status,
  .close = file_close,
};

struct source *
source_file_from_fd (int fd)
{
  struct source *s = malloc (sizeof *s);

  if (s == NULL)
    return NULL;
  s->ops = &file_ops;
  s->fd = fd;
  return s;
}
