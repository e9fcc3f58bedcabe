/* SPDX-License-Identifier: BSD-3-Clause */
/* The source under a format driver: where an image's bytes live.  A
 * driver reads and writes its "host file" only through these calls, so
 * that the same driver runs over a local file (hostfile.c) or over a
 * remote NBD export (source-nbd.c, read-only, for backing images).
 *
 *   driver (raw, qed, qcow2)
 *     |  source_pread / source_pwrite / source_sync / source_size /
 *     |  source_data_status          (one indirect call each)
 *   struct source
 *     |-- local file: pread/pwrite on fd, SEEK_DATA, fdatasync
 *     `-- NBD export: libnbd, a pool of connections per URI
 *
 * The fast paths only a local file has (RWF_NOWAIT, tmpfs detection,
 * fallocate, hole punching, truncation, locks) stay on the descriptor:
 * src->fd, also in img->fd, is -1 for any other source, and those paths
 * are then absent.  A writable image is always a local file.
 *
 * Errors: -1 with errno set and no message; the caller says what it was
 * doing (as the host_* functions of hostfile.c always did).
 */
#ifndef COWBD_FORMATS_SOURCE_H
#define COWBD_FORMATS_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct source;

struct source_ops {
  const char *name;             /* "file", "nbd" */
  /* Full-length transfers; a read past the end reads zeros. */
  int (*pread) (struct source *s, void *buf, size_t count, uint64_t offset);
  int (*pwrite) (struct source *s, const void *buf, size_t count,
                 uint64_t offset);
  int (*sync) (struct source *s);
  int (*size) (struct source *s, uint64_t *size);
  /* As host_data_status: whether offset starts a run of data (false: it
   * reads as zeros) and the run's length (<= count).  With quick, a data
   * run need not be followed to its end. */
  int (*data_status) (struct source *s, uint64_t offset, uint64_t count,
                      bool quick, bool *is_data, uint64_t *len);
  int (*close) (struct source *s);      /* frees s, even on error */
  /* Adds the source's figures (bytes fetched from a remote, base cache
   * hits and misses) to the three; NULL: a source without any. */
  void (*stats) (struct source *s, uint64_t *fetched, uint64_t *hits,
                 uint64_t *misses);
};

struct source {
  const struct source_ops *ops;
  int fd;                       /* the local file, or -1 */
};

/* Tunables of sources that are not local files (image_open_opts). */
struct source_opts {
  unsigned timeout_ms;          /* a remote request fails with EIO after
                                   this long; 0: the default */
  const char *base_cache_dir;   /* NULL, or where basecache.c keeps
                                   remote data (--base-cache) */
  uint64_t base_cache_size;     /* its bound; 0: none */
};

/* True if name is a URI naming a remote source (nbd://, nbd+unix://,
 * nbds://, nbds+unix://...), never a path to resolve. */
bool source_is_uri (const char *name);

/* Opens name: a URI through its driver (read-only only: EROFS
 * otherwise), else the local file (O_RDONLY or O_RDWR), which must be a
 * regular file or a block device (opened without blocking, its type
 * checked before any read: a FIFO would hang the open).  For a URI the
 * error message (error_set) is set here, naming it; for a file errno,
 * and *why says what failed (the file's type, or strerror). */
struct source *source_open (const char *name, bool readonly,
                            const struct source_opts *opts,
                            const char **why);
/* A source over an open local descriptor, which it then owns. */
struct source *source_file_from_fd (int fd);

static inline int
source_pread (struct source *s, void *buf, size_t count, uint64_t offset)
{
  return s->ops->pread (s, buf, count, offset);
}

static inline int
source_pwrite (struct source *s, const void *buf, size_t count,
               uint64_t offset)
{
  return s->ops->pwrite (s, buf, count, offset);
}

static inline int
source_sync (struct source *s)
{
  return s->ops->sync (s);
}

static inline int
source_size (struct source *s, uint64_t *size)
{
  return s->ops->size (s, size);
}

static inline int
source_data_status (struct source *s, uint64_t offset, uint64_t count,
                    bool quick, bool *is_data, uint64_t *len)
{
  return s->ops->data_status (s, offset, count, quick, is_data, len);
}

static inline int
source_close (struct source *s)
{
  return s ? s->ops->close (s) : 0;
}

/* As source_pread into a buffer already zeroed (calloc), but writes only
 * the pages (of SOURCE_SPARSE_PAGE bytes from buf) that are not all
 * zeros: the others stay untouched and cost no memory (a fresh clone's
 * empty L1 table: 256 KiB by default).  The caller must not read them
 * either: on some kernels a read of an untouched page allocates it too.
 * So the pages written are set in copied (a zeroed bitmap, one bit per
 * page, bit i of word i / 64), which may be NULL. */
#define SOURCE_SPARSE_PAGE 4096u
int source_pread_sparse (struct source *s, void *buf, size_t count,
                         uint64_t offset, uint64_t *copied);

#ifdef HAVE_LIBNBD
/* source-nbd.c: a remote export, read-only. */
struct source *source_nbd_open (const char *uri,
                                const struct source_opts *opts);
#endif

#endif /* COWBD_FORMATS_SOURCE_H */
