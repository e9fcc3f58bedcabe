/* SPDX-License-Identifier: BSD-3-Clause */
/* A fault-injection and recording shim for the tests, preloaded
 * (LD_PRELOAD) into cowbd or nbdkit; built by make check, never installed.
 *
 * It wraps the calls that change a file or make it durable - pwrite,
 * pwritev, pwritev2, copy_file_range (as the file written), fdatasync,
 * fsync, fallocate, ftruncate - and acts on
 * those whose file (found through /proc/self/fd, cached per descriptor by
 * device and inode) has FAULT_PATH in its name.  Other files, and every
 * call when FAULT_PATH is unset, go straight through.
 *
 *   FAULT_OP=OP[,OP...]  which calls count: pwrite, pwritev (pwritev2
 *                        too), copy_file_range, fdatasync, fsync,
 *                        fallocate, ftruncate, or the groups write
 *                        (pwrite, pwritev, copy_file_range) and sync
 *                        (fdatasync, fsync)
 *   FAULT_NTH=N          the Nth counted call fails (1: the first)...
 *   FAULT_COUNT=K|forever ... and so do the K-1 after it (default 1)
 *   FAULT_ERRNO=EIO|ENOSPC|EDQUOT|number   the error (default EIO)
 *   FAULT_ARM=FILE       count only while FILE exists (a test arms the
 *                        shim once its setup is done, and disarms it)
 *   FAULT_NOSYNC=1       fdatasync and fsync do nothing and succeed:
 *                        the power-loss test's negative control
 *   FAULT_RECORD=FILE    append every successful write, truncate and
 *                        allocation (after it), and every sync (before
 *                        it: what was written before it is what it makes
 *                        durable) to the journal FILE, for the power-loss
 *                        test (tests/powercut.py reads it)
 *
 * Journal record (little-endian): type u8 ('W' write, 'S' sync, 'T'
 * truncate, 'F' fallocate, 'M' a client's marker), u8 0, u16 path
 * length, u32 fallocate mode, u64 offset, u64 length, u64 data length;
 * then the path and the data.  One write per record on an O_APPEND
 * descriptor, so that a client process may append markers in between.
 *
 * When the build is sanitized, the ASan runtime comes first in LD_PRELOAD
 * and this shim after it: ASan's interceptors then call ours.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum op { OP_PWRITE, OP_PWRITEV, OP_FDATASYNC, OP_FSYNC, OP_FALLOCATE,
          OP_FTRUNCATE, OP_COPY, NR_OPS };

static const char *op_names[NR_OPS] = {
  "pwrite", "pwritev", "fdatasync", "fsync", "fallocate", "ftruncate",
  "copy_file_range",
};

/* ---- configuration, read once ------------------------------------------ */

static struct {
  const char *path;
  bool ops[NR_OPS];
  unsigned long nth;
  unsigned long count;          /* ULONG_MAX: forever */
  int errnum;
  const char *arm;
  bool nosync;
  const char *record;
} cfg;

static pthread_once_t cfg_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long counted;   /* under lock */
static int journal = -1;        /* under lock */

static void
parse_ops (const char *s)
{
  char buf[256], *tok, *save = NULL;
  int i;

  snprintf (buf, sizeof buf, "%s", s);
  for (tok = strtok_r (buf, ",", &save); tok;
       tok = strtok_r (NULL, ",", &save)) {
    if (strcmp (tok, "write") == 0)
      cfg.ops[OP_PWRITE] = cfg.ops[OP_PWRITEV] = cfg.ops[OP_COPY] = true;
    else if (strcmp (tok, "sync") == 0)
      cfg.ops[OP_FDATASYNC] = cfg.ops[OP_FSYNC] = true;
    for (i = 0; i < NR_OPS; i++)
      if (strcmp (tok, op_names[i]) == 0)
        cfg.ops[i] = true;
  }
}

static int
parse_errno (const char *s)
{
  if (s == NULL || strcmp (s, "EIO") == 0)
    return EIO;
  if (strcmp (s, "ENOSPC") == 0)
    return ENOSPC;
  if (strcmp (s, "EDQUOT") == 0)
    return EDQUOT;
  return atoi (s) > 0 ? atoi (s) : EIO;
}

static void
read_config (void)
{
  const char *s;

  cfg.path = getenv ("FAULT_PATH");
  if ((s = getenv ("FAULT_OP")) != NULL)
    parse_ops (s);
  s = getenv ("FAULT_NTH");
  cfg.nth = s ? strtoul (s, NULL, 10) : 0;
  s = getenv ("FAULT_COUNT");
  if (s && strcmp (s, "forever") == 0)
    cfg.count = ULONG_MAX;
  else
    cfg.count = s ? strtoul (s, NULL, 10) : 1;
  cfg.errnum = parse_errno (getenv ("FAULT_ERRNO"));
  cfg.arm = getenv ("FAULT_ARM");
  s = getenv ("FAULT_NOSYNC");
  cfg.nosync = s && strcmp (s, "1") == 0;
  cfg.record = getenv ("FAULT_RECORD");
}

static void
config (void)
{
  pthread_once (&cfg_once, read_config);
}

/* ---- which descriptors match ------------------------------------------ */

#define MAX_FDS 4096
struct fd_info {
  dev_t dev;
  ino_t ino;
  bool known, match;
  char path[PATH_MAX];
};
static struct fd_info fds[MAX_FDS]; /* under lock */

/* Whether fd's file matches FAULT_PATH; its name into path (if not
 * NULL).  Called with lock held. */
static bool
fd_matches (int fd, char *path)
{
  struct fd_info *f;
  struct stat st;
  char link[64];
  ssize_t n;

  if (cfg.path == NULL || fd < 0 || fd >= MAX_FDS || fstat (fd, &st) == -1)
    return false;
  f = &fds[fd];
  if (!f->known || f->dev != st.st_dev || f->ino != st.st_ino) {
    snprintf (link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink (link, f->path, sizeof f->path - 1);
    f->path[n < 0 ? 0 : n] = '\0';
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->known = true;
    f->match = n > 0 && strstr (f->path, cfg.path) != NULL;
  }
  if (path)
    strcpy (path, f->path);
  return f->match;
}

/* Whether this call of op on fd fails: 0, or the errno to fail with. */
static int
inject (enum op op, int fd)
{
  int e = 0;

  config ();
  if (cfg.nth == 0 || !cfg.ops[op])
    return 0;
  pthread_mutex_lock (&lock);
  if (fd_matches (fd, NULL) &&
      (cfg.arm == NULL || access (cfg.arm, F_OK) == 0)) {
    counted++;
    if (counted >= cfg.nth &&
        (cfg.count == ULONG_MAX || counted - cfg.nth < cfg.count))
      e = cfg.errnum;
  }
  pthread_mutex_unlock (&lock);
  return e;
}

static bool
skip_sync (int fd)
{
  bool r;

  config ();
  if (!cfg.nosync)
    return false;
  pthread_mutex_lock (&lock);
  r = fd_matches (fd, NULL);
  pthread_mutex_unlock (&lock);
  return r;
}

/* ---- the journal -------------------------------------------------------- */

struct rec_header {
  uint8_t type, pad;
  uint16_t path_len;
  uint32_t mode;
  uint64_t offset, length, data_len;
} __attribute__ ((packed));

static void
write_all (int fd, struct iovec *iov, int n)
{
  while (n > 0) {
    ssize_t r = writev (fd, iov, n);
    if (r <= 0) {
      if (r == -1 && errno == EINTR)
        continue;
      abort ();                 /* a journal with a hole is worthless */
    }
    while (n > 0 && (size_t) r >= iov->iov_len) {
      r -= (ssize_t) iov->iov_len;
      iov++;
      n--;
    }
    if (n > 0) {
      iov->iov_base = (char *) iov->iov_base + r;
      iov->iov_len -= (size_t) r;
    }
  }
}

/* Records one call on fd (if it matches): data from iov (datacnt
 * buffers, total data_len bytes). */
static void
record (char type, int fd, uint32_t mode, uint64_t offset, uint64_t length,
        const struct iovec *data, int datacnt)
{
  struct iovec iov[2 + IOV_MAX];
  struct rec_header h = { .type = (uint8_t) type, .mode = mode,
                          .offset = offset, .length = length };
  char path[PATH_MAX];
  int saved = errno, i;

  config ();
  if (cfg.record == NULL || datacnt > IOV_MAX)
    return;
  pthread_mutex_lock (&lock);
  if (!fd_matches (fd, path))
    goto out;
  if (journal == -1)
    journal = open (cfg.record, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
                    0644);
  if (journal == -1)
    abort ();
  h.path_len = (uint16_t) strlen (path);
  iov[0] = (struct iovec) { &h, sizeof h };
  iov[1] = (struct iovec) { path, h.path_len };
  for (i = 0; i < datacnt; i++) {
    iov[2 + i] = data[i];
    h.data_len += data[i].iov_len;
  }
  write_all (journal, iov, 2 + datacnt);
 out:
  pthread_mutex_unlock (&lock);
  errno = saved;
}

/* Records what a write of r bytes from iov (partly, if short) wrote. */
static void
record_write (int fd, const struct iovec *iov, int iovcnt, off_t offset,
              ssize_t r)
{
  struct iovec part[IOV_MAX];
  size_t left = r > 0 ? (size_t) r : 0;
  int i, n = 0;

  for (i = 0; i < iovcnt && i < IOV_MAX && left > 0; i++) {
    part[n] = iov[i];
    if (part[n].iov_len > left)
      part[n].iov_len = left;
    left -= part[n].iov_len;
    n++;
  }
  if (r > 0)
    record ('W', fd, 0, (uint64_t) offset, (uint64_t) r, part, n);
}

/* ---- the wrappers ------------------------------------------------------- */

#define REAL(name, type)                                       \
  static type real_##name;                                     \
  if (real_##name == NULL)                                     \
    real_##name = (type) dlsym (RTLD_NEXT, #name)

#define INJECT(op, fd)                          \
  do {                                          \
    int e_ = inject (op, fd);                   \
    if (e_) {                                   \
      errno = e_;                               \
      return -1;                                \
    }                                           \
  } while (0)

typedef ssize_t (*pwrite_t) (int, const void *, size_t, off_t);
typedef ssize_t (*pwritev_t) (int, const struct iovec *, int, off_t);
typedef ssize_t (*pwritev2_t) (int, const struct iovec *, int, off_t, int);
typedef int (*fd_t) (int);
typedef int (*fallocate_t) (int, int, off_t, off_t);
typedef int (*ftruncate_t) (int, off_t);

static ssize_t
do_pwrite (pwrite_t real, int fd, const void *buf, size_t n, off_t off)
{
  struct iovec iov = { (void *) buf, n };
  ssize_t r;

  INJECT (OP_PWRITE, fd);
  r = real (fd, buf, n, off);
  record_write (fd, &iov, 1, off, r);
  return r;
}

ssize_t
pwrite (int fd, const void *buf, size_t n, off_t off)
{
  REAL (pwrite, pwrite_t);
  return do_pwrite (real_pwrite, fd, buf, n, off);
}

ssize_t
pwrite64 (int fd, const void *buf, size_t n, off_t off)
{
  REAL (pwrite64, pwrite_t);
  return do_pwrite (real_pwrite64, fd, buf, n, off);
}

static ssize_t
do_pwritev (pwritev_t real, int fd, const struct iovec *iov, int cnt,
            off_t off)
{
  ssize_t r;

  INJECT (OP_PWRITEV, fd);
  r = real (fd, iov, cnt, off);
  record_write (fd, iov, cnt, off, r);
  return r;
}

ssize_t
pwritev (int fd, const struct iovec *iov, int cnt, off_t off)
{
  REAL (pwritev, pwritev_t);
  return do_pwritev (real_pwritev, fd, iov, cnt, off);
}

ssize_t
pwritev64 (int fd, const struct iovec *iov, int cnt, off_t off)
{
  REAL (pwritev64, pwritev_t);
  return do_pwritev (real_pwritev64, fd, iov, cnt, off);
}

static ssize_t
do_pwritev2 (pwritev2_t real, int fd, const struct iovec *iov, int cnt,
             off_t off, int flags)
{
  ssize_t r;

  INJECT (OP_PWRITEV, fd);
  r = real (fd, iov, cnt, off, flags);
  record_write (fd, iov, cnt, off, r);
  return r;
}

ssize_t
pwritev2 (int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
  REAL (pwritev2, pwritev2_t);
  return do_pwritev2 (real_pwritev2, fd, iov, cnt, off, flags);
}

ssize_t
pwritev64v2 (int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
  REAL (pwritev64v2, pwritev2_t);
  return do_pwritev2 (real_pwritev64v2, fd, iov, cnt, off, flags);
}

/* Records what a copy_file_range wrote: the r bytes at off of fd, read
 * back (in pieces: one write record each), as if written by pwrite. */
static void
record_copy (int fd, off_t off, ssize_t r)
{
  static const size_t piece = 1 << 20;
  size_t done = 0;
  char *buf;

  if (r <= 0 || (buf = malloc (piece)) == NULL)
    return;
  while (done < (size_t) r) {
    size_t n = (size_t) r - done < piece ? (size_t) r - done : piece;
    struct iovec iov = { buf, n };
    if (pread (fd, buf, n, off + (off_t) done) != (ssize_t) n)
      abort ();                 /* a journal with a hole is worthless */
    record_write (fd, &iov, 1, off + (off_t) done, (ssize_t) n);
    done += n;
  }
  free (buf);
}

typedef ssize_t (*copy_t) (int, loff_t *, int, loff_t *, size_t,
                           unsigned);

ssize_t
copy_file_range (int fd_in, loff_t *off_in, int fd_out, loff_t *off_out,
                 size_t n, unsigned flags)
{
  off_t at;
  ssize_t r;

  REAL (copy_file_range, copy_t);
  INJECT (OP_COPY, fd_out);
  at = off_out ? *off_out : lseek (fd_out, 0, SEEK_CUR);
  r = real_copy_file_range (fd_in, off_in, fd_out, off_out, n, flags);
  record_copy (fd_out, at, r);
  return r;
}

static int
do_sync (fd_t real, enum op op, int fd)
{
  INJECT (op, fd);
  /* A skipped sync is no sync: the journal must not claim one. */
  if (skip_sync (fd))
    return 0;
  record ('S', fd, 0, 0, 0, NULL, 0);
  return real (fd);
}

int
fdatasync (int fd)
{
  REAL (fdatasync, fd_t);
  return do_sync (real_fdatasync, OP_FDATASYNC, fd);
}

int
fsync (int fd)
{
  REAL (fsync, fd_t);
  return do_sync (real_fsync, OP_FSYNC, fd);
}

static int
do_fallocate (fallocate_t real, int fd, int mode, off_t off, off_t len)
{
  int r;

  INJECT (OP_FALLOCATE, fd);
  r = real (fd, mode, off, len);
  if (r == 0)
    record ('F', fd, (uint32_t) mode, (uint64_t) off, (uint64_t) len,
            NULL, 0);
  return r;
}

int
fallocate (int fd, int mode, off_t off, off_t len)
{
  REAL (fallocate, fallocate_t);
  return do_fallocate (real_fallocate, fd, mode, off, len);
}

int
fallocate64 (int fd, int mode, off_t off, off_t len)
{
  REAL (fallocate64, fallocate_t);
  return do_fallocate (real_fallocate64, fd, mode, off, len);
}

static int
do_ftruncate (ftruncate_t real, int fd, off_t len)
{
  int r;

  INJECT (OP_FTRUNCATE, fd);
  r = real (fd, len);
  if (r == 0)
    record ('T', fd, 0, 0, (uint64_t) len, NULL, 0);
  return r;
}

int
ftruncate (int fd, off_t len)
{
  REAL (ftruncate, ftruncate_t);
  return do_ftruncate (real_ftruncate, fd, len);
}

int
ftruncate64 (int fd, off_t len)
{
  REAL (ftruncate64, ftruncate_t);
  return do_ftruncate (real_ftruncate64, fd, len);
}
