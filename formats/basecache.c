/* SPDX-License-Identifier: BSD-3-Clause */
/* The base cache: each 64 KiB chunk of a remote base is fetched once per
 * host and kept in a sparse file (layout and crash rules C1-C4:
 * basecache-file.c), shared by every handle of the process.
 *
 * One struct bc_shared per cache file per process, found in a registry by
 * (folder's device and inode, URI, size) and refcounted; each handle
 * (struct basecache) brings its own fetch function.  A second process
 * finds the file locked and runs uncached: its reads go to the remote.
 *
 * A chunk's life (struct chunk.state, changed under sh->lock only):
 *
 *               claim                   fetched, written
 *     ABSENT ----------> BUSY (filling) -----------------> PRESENT
 *       ^  ^   fetch failed  |  ^                          |  ^
 *       |  '-----------------'  | claim            evict   |  | verified
 *       |                       | (first read)             v  |  (C3)
 *       |                     STORED (from the table)    BUSY (verifying
 *       '----------------- BUSY (evicting) <-- evict --' or evicting)
 *
 * Readers that meet a BUSY chunk wait on sh->changed, so concurrent misses
 * of one chunk fetch it once.  A reader pins the PRESENT chunks it reads
 * (chunk.pins) so eviction passes them over while it preads outside the
 * lock; a hit costs two short critical sections and one pread.
 *
 * Records are written by a flusher thread per cache: a filled chunk is
 * queued with its generation; the flusher takes the queue, fdatasyncs
 * the file (C1), and writes the records of the chunks still PRESENT with
 * that generation.  So a record never reaches the file before its data
 * is durable, and one fdatasync covers a whole batch.
 *
 * Read-ahead (opts.readahead chunks, 0: none): a read that follows
 * cached data is taken as sequential, and when at least half of the
 * window after it is absent, a read-ahead thread per cache claims those
 * chunks (BUSY, like any fill, so a reader that gets there first waits
 * for them rather than fetching them again) and fetches them in runs of
 * BC_RA_RUN.  They are then filled exactly as a reader fills them: data
 * written, records through the flusher (C1).  A failed read-ahead leaves
 * its chunks ABSENT and, like a reader's failed fill, fails the reads
 * that were waiting for them (a lost remote costs each read one timeout,
 * not two); later reads fetch them again.  Read-ahead never pushes the
 * cache past its
 * bound.  So one reader going sequentially keeps one large fetch in
 * flight ahead of it, instead of paying a round trip per read.
 *
 * Locks, in order: bc_registry_lock (open and close only), then
 * sh->table_lock (held while records are written, so that a clear by
 * eviction is never overtaken by an older set), then sh->lock.  No file
 * is synced with sh->lock held, and no fetch runs with any lock held.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_FALLOCATE
#include <linux/falloc.h>
#endif

#include "basecache.h"
#include "basecache-file.h"
#include "cleanup.h"

#define CS              BC_CHUNK_SIZE
#define NIL             UINT32_MAX
#define SEG_CHUNKS      16      /* chunks per segment of a read: 1 MiB */
#define VICTIMS         32      /* chunks evicted per round */
#define BATCH_WINDOW_MS 10      /* the flusher gathers records this long */

enum { CH_ABSENT, CH_STORED, CH_PRESENT, CH_BUSY };

struct chunk {
  uint32_t prev, next;          /* LRU links: STORED and PRESENT only */
  uint32_t crc;                 /* CRC-32 of the data: STORED, PRESENT */
  uint16_t pins;                /* readers about to pread it */
  uint8_t state;
  uint8_t gen;                  /* bumped at each fill */
};

struct pending {                /* a record waiting for its data's sync */
  uint32_t chunk;
  uint8_t gen;
};

struct bc_shared {
  /* Set at open, then constant; next, refs and opening under
   * bc_registry_lock. */
  struct bc_shared *next;
  unsigned refs;
  bool opening;                 /* the first opener is still at work */
  dev_t dir_dev;
  ino_t dir_ino;
  char *uri;
  uint64_t size;
  char *path;
  int fd;
  uint64_t max_bytes;
  uint64_t data_offset;
  uint32_t nchunks;
  pthread_t flusher;
  unsigned ra_window;           /* opts.readahead */
  bool ra_started;              /* the read-ahead thread runs */
  pthread_t ra_thread;
  uint8_t *ra_buf;              /* BC_RA_RUN chunks: the thread's own */

  pthread_mutex_t table_lock;   /* writes of records */

  pthread_mutex_t lock;         /* everything below */
  pthread_cond_t changed;       /* a chunk left CH_BUSY */
  pthread_cond_t wake;          /* the flusher has work, or closing */
  pthread_cond_t ra_wake;       /* read-ahead has work, or ra_stop */
  struct basecache *ra_bc;      /* whose fetch read-ahead uses; NULL: idle */
  struct basecache *ra_using;   /* the handle a read-ahead fetch uses */
  uint32_t ra_next, ra_end;     /* chunks still to read ahead */
  bool ra_stop;
  struct chunk *chunks;
  uint32_t lru_head, lru_tail;  /* head: most recently used */
  uint64_t cached_bytes;        /* STORED, PRESENT and filling chunks */
  struct pending *pending;
  size_t npending, pending_cap;
  bool closing;
  bool sync_failed;             /* then no record is written again */
  uint64_t fail_seq;            /* fills that failed so far */
  int fail_errno;               /* and the errno of the last one */
  struct basecache_stats stats; /* hits, misses, fetched_bytes: atomic */
};

struct basecache {
  struct bc_shared *sh;         /* NULL: uncached */
  basecache_fetch_fn fetch;
  void *opaque;
  uint64_t size;
  struct basecache_stats own;   /* an uncached handle's counters */
};

/* What a read does with each chunk of a segment. */
enum { ACT_PIN, ACT_FILL, ACT_WAIT, ACT_DONE };

struct seg {
  uint32_t first;               /* chunks first .. first + n - 1 */
  unsigned n;
  uint8_t act[SEG_CHUNKS];
  bool stored[SEG_CHUNKS];      /* ACT_FILL of a STORED chunk: verify */
  uint64_t fail_seq;            /* sh->fail_seq when the read began */
  uint8_t *buf;                 /* n chunks: the data of ACT_DONE ones */
};

static pthread_mutex_t bc_registry_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t bc_registry_cond = PTHREAD_COND_INITIALIZER;
static struct bc_shared *bc_registry;

static void
bc_add (uint64_t *counter, uint64_t n)
{
  __atomic_add_fetch (counter, n, __ATOMIC_RELAXED);
}

static uint64_t
bc_load (const uint64_t *counter)
{
  return __atomic_load_n (counter, __ATOMIC_RELAXED);
}

static uint64_t
chunk_len (const struct bc_shared *sh, uint32_t c)
{
  uint64_t off = (uint64_t) c * CS;

  return sh->size - off < CS ? sh->size - off : CS;
}

static void
bc_punch (int fd, uint64_t offset, uint64_t len)
{
#if defined (HAVE_FALLOCATE) && defined (FALLOC_FL_PUNCH_HOLE)
  /* Best effort: a chunk whose record is gone is not read again. */
  (void) fallocate (fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                    (off_t) offset, (off_t) len);
#else
  (void) fd, (void) offset, (void) len;
#endif
}

/* ---- the LRU list (called with sh->lock held) ------------------------ */

static void
lru_unlink (struct bc_shared *sh, uint32_t c)
{
  struct chunk *ch = &sh->chunks[c];

  if (ch->prev != NIL)
    sh->chunks[ch->prev].next = ch->next;
  else
    sh->lru_head = ch->next;
  if (ch->next != NIL)
    sh->chunks[ch->next].prev = ch->prev;
  else
    sh->lru_tail = ch->prev;
  ch->prev = ch->next = NIL;
}

static void
lru_push (struct bc_shared *sh, uint32_t c)
{
  struct chunk *ch = &sh->chunks[c];

  ch->prev = NIL;
  ch->next = sh->lru_head;
  if (sh->lru_head != NIL)
    sh->chunks[sh->lru_head].prev = c;
  else
    sh->lru_tail = c;
  sh->lru_head = c;
}

static void
lru_touch (struct bc_shared *sh, uint32_t c)
{
  if (sh->lru_head != c) {
    lru_unlink (sh, c);
    lru_push (sh, c);
  }
}

/* ---- eviction -------------------------------------------------------- */

/* Takes up to VICTIMS unpinned chunks from the cold end of the LRU list
 * while the cache is over its bound.  Called with sh->lock held. */
static unsigned
bc_pick_victims (struct bc_shared *sh, uint32_t *victims)
{
  uint32_t c = sh->lru_tail, prev;
  unsigned n = 0;

  while (sh->max_bytes && c != NIL && n < VICTIMS &&
         sh->cached_bytes > sh->max_bytes) {
    prev = sh->chunks[c].prev;
    if (sh->chunks[c].pins == 0) {
      lru_unlink (sh, c);
      sh->chunks[c].state = CH_BUSY;
      sh->cached_bytes -= chunk_len (sh, c);
      sh->stats.evicted_bytes += chunk_len (sh, c);
      victims[n++] = c;
    }
    c = prev;
  }
  return n;
}

/* Rule C2: the records are cleared, then the data punched out. */
static void
bc_evict (struct bc_shared *sh, const uint32_t *victims, unsigned n)
{
  static const uint8_t zero[BC_RECORD_SIZE];
  unsigned i;

  pthread_mutex_lock (&sh->table_lock);
  for (i = 0; i < n; i++)       /* a failure leaves a record C3 rejects */
    (void) bcfile_pwrite (sh->fd, zero, sizeof zero,
                          BC_TABLE_OFFSET +
                          (uint64_t) victims[i] * BC_RECORD_SIZE);
  pthread_mutex_unlock (&sh->table_lock);
  for (i = 0; i < n; i++)
    bc_punch (sh->fd, sh->data_offset + (uint64_t) victims[i] * CS, CS);
  pthread_mutex_lock (&sh->lock);
  for (i = 0; i < n; i++)
    sh->chunks[victims[i]].state = CH_ABSENT;
  pthread_cond_broadcast (&sh->changed);
  pthread_mutex_unlock (&sh->lock);
}

/* Evicts until the cache is within its bound or all that is left is in
 * use.  Called without locks. */
static void
bc_make_room (struct bc_shared *sh)
{
  uint32_t victims[VICTIMS];
  unsigned n;

  do {
    pthread_mutex_lock (&sh->lock);
    n = bc_pick_victims (sh, victims);
    pthread_mutex_unlock (&sh->lock);
    bc_evict (sh, victims, n);
  } while (n == VICTIMS);
}

/* ---- the flusher: records after their data (rule C1) ----------------- */

/* Queues chunk c's record.  Called with sh->lock held.  Out of memory,
 * the record is skipped: the chunk is fetched again after a restart. */
static void
bc_queue_record (struct bc_shared *sh, uint32_t c)
{
  struct pending *p;
  size_t cap;

  if (sh->npending == sh->pending_cap) {
    cap = sh->pending_cap ? 2 * sh->pending_cap : 64;
    p = realloc (sh->pending, cap * sizeof *p);
    if (p == NULL)
      return;
    sh->pending = p;
    sh->pending_cap = cap;
  }
  sh->pending[sh->npending++] = (struct pending) { c, sh->chunks[c].gen };
  if (sh->npending == 1)
    pthread_cond_signal (&sh->wake);
}

/* Encodes the records of batch entries whose chunk still holds the data
 * that was queued; returns how many, in rec and idx.  Called with
 * sh->lock held. */
static size_t
bc_collect_records (struct bc_shared *sh, const struct pending *batch,
                    size_t n, uint8_t *rec, uint32_t *idx)
{
  size_t i, m = 0;

  for (i = 0; i < n; i++) {
    const struct chunk *ch = &sh->chunks[batch[i].chunk];

    if (sh->sync_failed || ch->state != CH_PRESENT || ch->gen != batch[i].gen)
      continue;
    bcfile_record_encode (rec + m * BC_RECORD_SIZE, batch[i].chunk, ch->crc);
    idx[m++] = batch[i].chunk;
  }
  return m;
}

/* Writes m records, one pwrite per run of consecutive chunks. */
static void
bc_write_records (struct bc_shared *sh, const uint8_t *rec,
                  const uint32_t *idx, size_t m)
{
  size_t i, j;

  for (i = 0; i < m; i = j) {
    for (j = i + 1; j < m && idx[j] == idx[j - 1] + 1; j++)
      ;
    (void) bcfile_pwrite (sh->fd, rec + i * BC_RECORD_SIZE,
                          (j - i) * BC_RECORD_SIZE,
                          BC_TABLE_OFFSET +
                          (uint64_t) idx[i] * BC_RECORD_SIZE);
  }
}

/* Makes the batch's data durable, then writes its records.  Every chunk
 * of the batch was written before it was queued, so this fdatasync covers
 * it (C1).  After a failed sync the kernel may have dropped data: no
 * record is written again by this process. */
static void
bc_commit (struct bc_shared *sh, const struct pending *batch, size_t n)
{
  CLEANUP_FREE uint8_t *rec = malloc (n * BC_RECORD_SIZE);
  CLEANUP_FREE uint32_t *idx = malloc (n * sizeof *idx);
  size_t m;
  bool synced = fdatasync (sh->fd) == 0;

  if (rec == NULL || idx == NULL)
    return;
  pthread_mutex_lock (&sh->table_lock);
  pthread_mutex_lock (&sh->lock);
  if (!synced)
    sh->sync_failed = true;
  m = bc_collect_records (sh, batch, n, rec, idx);
  pthread_mutex_unlock (&sh->lock);
  bc_write_records (sh, rec, idx, m);
  pthread_mutex_unlock (&sh->table_lock);
}

/* Waits up to BATCH_WINDOW_MS for more records.  Called with sh->lock
 * held. */
static void
bc_batch_window (struct bc_shared *sh)
{
  struct timespec ts;

  clock_gettime (CLOCK_REALTIME, &ts);
  ts.tv_nsec += BATCH_WINDOW_MS * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  if (!sh->closing)
    pthread_cond_timedwait (&sh->wake, &sh->lock, &ts);
}

static void *
bc_flusher (void *arg)
{
  struct bc_shared *sh = arg;
  struct pending *batch;
  size_t n;
  bool stop;

  do {
    pthread_mutex_lock (&sh->lock);
    while (sh->npending == 0 && !sh->closing)
      pthread_cond_wait (&sh->wake, &sh->lock);
    bc_batch_window (sh);
    batch = sh->pending;
    n = sh->npending;
    sh->pending = NULL;
    sh->npending = sh->pending_cap = 0;
    stop = sh->closing && n == 0;
    pthread_mutex_unlock (&sh->lock);
    if (n > 0)
      bc_commit (sh, batch, n);
    free (batch);
  } while (!stop);
  return NULL;
}

/* ---- reading a segment ----------------------------------------------- */

/* Decides what the read does with chunk i of s.  Called with sh->lock
 * held. */
static void
bc_claim (struct bc_shared *sh, struct seg *s, unsigned i)
{
  uint32_t c = s->first + i;
  struct chunk *ch = &sh->chunks[c];

  s->stored[i] = false;
  switch (ch->state) {
  case CH_PRESENT:
    assert (ch->pins < UINT16_MAX);
    ch->pins++;
    s->act[i] = ACT_PIN;
    break;
  case CH_STORED:
    lru_unlink (sh, c);
    ch->state = CH_BUSY;
    s->act[i] = ACT_FILL;
    s->stored[i] = true;
    break;
  case CH_ABSENT:
    ch->state = CH_BUSY;
    sh->cached_bytes += chunk_len (sh, c);
    s->act[i] = ACT_FILL;
    break;
  default:
    s->act[i] = ACT_WAIT;
  }
}

/* Waits for the chunks other readers were busy with and claims them, up
 * to the first that is now this read's to fill, which the read fills
 * before it waits for any other.  A reader never waits while it holds a
 * claim it has not filled, so two readers never wait for each other.
 * A chunk whose fill failed while this read waited fails the read with
 * the same error: when the remote is gone, each waiter gets the error
 * in the time of one fetch, instead of retrying one after another.
 * Called with sh->lock held. */
static int
bc_claim_waited (struct bc_shared *sh, struct seg *s)
{
  unsigned i;

  for (i = 0; i < s->n; i++) {
    if (s->act[i] != ACT_WAIT)
      continue;
    while (sh->chunks[s->first + i].state == CH_BUSY)
      pthread_cond_wait (&sh->changed, &sh->lock);
    if (sh->chunks[s->first + i].state == CH_ABSENT &&
        sh->fail_seq != s->fail_seq) {
      errno = sh->fail_errno;
      return -1;
    }
    bc_claim (sh, s, i);
    if (s->act[i] == ACT_FILL)
      break;
  }
  return 0;
}

static bool
bc_seg_has (const struct seg *s, int act)
{
  unsigned i;

  for (i = 0; i < s->n; i++)
    if (s->act[i] == act)
      return true;
  return false;
}

/* Rule C3: a STORED chunk this read claimed is used only if its data
 * matches its record; the data stays in s->buf.  Others stay claimed, to
 * be fetched. */
static void
bc_verify (struct bc_shared *sh, struct seg *s)
{
  unsigned i;

  for (i = 0; i < s->n; i++) {
    uint32_t c = s->first + i;
    uint8_t *p = s->buf + (size_t) i * CS;
    size_t len = chunk_len (sh, c);

    if (s->act[i] != ACT_FILL || !s->stored[i])
      continue;
    s->stored[i] = false;
    if (bcfile_pread (sh->fd, p, len, sh->data_offset + (uint64_t) c * CS)
        == -1 || bcfile_crc (p, len) != sh->chunks[c].crc)
      continue;
    pthread_mutex_lock (&sh->lock);
    sh->chunks[c].state = CH_PRESENT;
    lru_push (sh, c);
    pthread_cond_broadcast (&sh->changed);
    pthread_mutex_unlock (&sh->lock);
    s->act[i] = ACT_DONE;
  }
}

/* Chunks [i, i + k) of s, fetched into s->buf, were written to the file
 * (stored) or not.  Called with sh->lock held. */
static void
bc_filled (struct bc_shared *sh, struct seg *s, unsigned i, unsigned k,
           const uint32_t *crc, bool stored)
{
  unsigned j;

  for (j = i; j < i + k; j++) {
    uint32_t c = s->first + j;
    struct chunk *ch = &sh->chunks[c];

    s->act[j] = ACT_DONE;
    if (!stored) {
      ch->state = CH_ABSENT;
      sh->cached_bytes -= chunk_len (sh, c);
      continue;
    }
    ch->crc = crc[j - i];
    ch->gen++;
    ch->state = CH_PRESENT;
    lru_push (sh, c);
    bc_queue_record (sh, c);
  }
  pthread_cond_broadcast (&sh->changed);
}

/* Fetches chunks [i, i + k) of s into s->buf and writes them to the file;
 * their records wait for the flusher (C1).  A cache that cannot be
 * written (a full disk) still serves the fetched data. */
static int
bc_fetch_run (struct basecache *bc, struct seg *s, unsigned i, unsigned k)
{
  struct bc_shared *sh = bc->sh;
  uint64_t off = (uint64_t) (s->first + i) * CS;
  size_t len = sh->size - off < (uint64_t) k * CS ?
    (size_t) (sh->size - off) : (size_t) k * CS;
  uint8_t *p = s->buf + (size_t) i * CS;
  uint32_t crc[SEG_CHUNKS];
  bool stored;
  unsigned j;

  if (bc->fetch (bc->opaque, p, len, off) == -1)
    return -1;
  bc_add (&sh->stats.fetched_bytes, len);
  for (j = 0; j < k; j++)
    crc[j] = bcfile_crc (p + (size_t) j * CS, chunk_len (sh, s->first + i + j));
  stored = bcfile_pwrite (sh->fd, p, len, sh->data_offset + off) == 0;
  if (!stored)
    bc_punch (sh->fd, sh->data_offset + off, (uint64_t) k * CS);
  pthread_mutex_lock (&sh->lock);
  bc_filled (sh, s, i, k, crc, stored);
  pthread_mutex_unlock (&sh->lock);
  return 0;
}

/* Fills the chunks s claimed: verified from the file, or fetched (one
 * fetch per run of neighbours, which sets *fetched). */
static int
bc_fill (struct basecache *bc, struct seg *s, bool *fetched)
{
  unsigned i, j;

  if (s->buf == NULL && (s->buf = malloc ((size_t) s->n * CS)) == NULL)
    return -1;
  bc_verify (bc->sh, s);
  for (i = 0; i < s->n; i = j) {
    j = i + 1;
    if (s->act[i] != ACT_FILL)
      continue;
    while (j < s->n && s->act[j] == ACT_FILL)
      j++;
    *fetched = true;
    if (bc_fetch_run (bc, s, i, j - i) == -1)
      return -1;
  }
  return 0;
}

/* Copies [off, off + len) out of s: pinned runs from the file (one pread
 * each), filled chunks from s->buf. */
static int
bc_copy_out (struct bc_shared *sh, const struct seg *s, uint8_t *dst,
             uint64_t off, size_t len)
{
  uint64_t base = (uint64_t) s->first * CS, end = off + len, a, b;
  unsigned i, j;

  for (i = 0; i < s->n; i = j) {
    for (j = i + 1; j < s->n && s->act[j] == s->act[i]; j++)
      ;
    a = off > base + (uint64_t) i * CS ? off : base + (uint64_t) i * CS;
    b = end < base + (uint64_t) j * CS ? end : base + (uint64_t) j * CS;
    assert (s->act[i] == ACT_PIN || s->act[i] == ACT_DONE);
    if (s->act[i] == ACT_DONE)
      memcpy (dst + (a - off), s->buf + (a - base), b - a);
    else if (bcfile_pread (sh->fd, dst + (a - off), b - a,
                           sh->data_offset + a) == -1)
      return -1;
  }
  return 0;
}

/* Gives back what s holds: pins (touching the LRU list), and on failure
 * (errno e) the chunks it claimed.  Called with sh->lock held. */
static void
bc_seg_release (struct bc_shared *sh, struct seg *s, int e)
{
  unsigned i;

  for (i = 0; i < s->n; i++) {
    uint32_t c = s->first + i;
    struct chunk *ch = &sh->chunks[c];

    if (s->act[i] == ACT_PIN) {
      ch->pins--;
      lru_touch (sh, c);
    }
    else if (s->act[i] == ACT_FILL) {
      ch->state = CH_ABSENT;
      sh->cached_bytes -= chunk_len (sh, c);
      sh->fail_seq++;
      sh->fail_errno = e;
      pthread_cond_broadcast (&sh->changed);
    }
  }
}

/* Claims, fills and waits until every chunk of s is pinned or in s->buf.
 * *fetched is set if anything came from the remote. */
static int
bc_gather (struct basecache *bc, struct seg *s, bool *fetched)
{
  struct bc_shared *sh = bc->sh;
  unsigned i;
  int r;

  pthread_mutex_lock (&sh->lock);
  s->fail_seq = sh->fail_seq;
  for (i = 0; i < s->n; i++)
    bc_claim (sh, s, i);
  pthread_mutex_unlock (&sh->lock);
  for (;;) {
    if (bc_seg_has (s, ACT_FILL)) {
      bc_make_room (sh);
      if (bc_fill (bc, s, fetched) == -1)
        return -1;
    }
    if (!bc_seg_has (s, ACT_WAIT))
      break;
    pthread_mutex_lock (&sh->lock);
    r = bc_claim_waited (sh, s);
    pthread_mutex_unlock (&sh->lock);
    if (r == -1)
      return -1;
  }
  return 0;
}

static int
bc_read_seg (struct basecache *bc, uint32_t first, unsigned n, uint8_t *dst,
             uint64_t off, size_t len, bool *fetched)
{
  struct bc_shared *sh = bc->sh;
  struct seg s = { .first = first, .n = n };
  int r, e;

  r = bc_gather (bc, &s, fetched);
  if (r == 0)
    r = bc_copy_out (sh, &s, dst, off, len);
  e = errno;
  pthread_mutex_lock (&sh->lock);
  bc_seg_release (sh, &s, e);
  pthread_mutex_unlock (&sh->lock);
  free (s.buf);
  errno = e;
  return r;
}

static void bc_ra_hint (struct basecache *bc, uint32_t first, uint32_t last);

static int
bc_read_uncached (struct basecache *bc, void *buf, size_t count,
                  uint64_t offset)
{
  if (bc->fetch (bc->opaque, buf, count, offset) == -1)
    return -1;
  bc_add (&bc->own.misses, 1);
  bc_add (&bc->own.fetched_bytes, count);
  return 0;
}

int
basecache_read (struct basecache *bc, void *buf, size_t count,
                uint64_t offset)
{
  uint64_t end = offset + count, seg_end;
  uint32_t c, last;
  bool fetched = false;
  uint32_t first;
  unsigned n;

  if (offset > bc->size || count > bc->size - offset) {
    errno = EINVAL;
    return -1;
  }
  if (count == 0)
    return 0;
  if (bc->sh == NULL)
    return bc_read_uncached (bc, buf, count, offset);
  last = (uint32_t) ((end - 1) / CS);
  first = (uint32_t) (offset / CS);
  for (c = first; c <= last; c += n) {
    n = last - c + 1 < SEG_CHUNKS ? last - c + 1 : SEG_CHUNKS;
    seg_end = (uint64_t) (c + n) * CS < end ? (uint64_t) (c + n) * CS : end;
    if (bc_read_seg (bc, c, n, buf, offset, seg_end - offset, &fetched) == -1)
      return -1;
    buf = (uint8_t *) buf + (seg_end - offset);
    offset = seg_end;
  }
  bc_add (fetched ? &bc->sh->stats.misses : &bc->sh->stats.hits, 1);
  if (bc->sh->ra_started) {
    pthread_mutex_lock (&bc->sh->lock);
    bc_ra_hint (bc, first, last);
    pthread_mutex_unlock (&bc->sh->lock);
  }
  return 0;
}

/* ---- read-ahead -------------------------------------------------------- */

/* A read of chunks [first, last] just ended.  If it follows cached data
 * and at least half of the window after it is absent, asks for that part
 * of the window to be read ahead with bc's fetch.  Called with sh->lock
 * held. */
static void
bc_ra_hint (struct basecache *bc, uint32_t first, uint32_t last)
{
  struct bc_shared *sh = bc->sh;
  uint64_t end = (uint64_t) last + 1 + sh->ra_window;
  uint32_t c;

  if (!sh->ra_started ||
      (first > 0 && sh->chunks[first - 1].state == CH_ABSENT))
    return;
  if (end > sh->nchunks)
    end = sh->nchunks;
  for (c = last + 1; c < end && sh->chunks[c].state != CH_ABSENT; c++)
    ;
  if (c == end || ((end - c) * 2 < sh->ra_window && end < sh->nchunks))
    return;
  if (sh->max_bytes && sh->cached_bytes + (end - c) * CS > sh->max_bytes)
    return;
  sh->ra_bc = bc;
  sh->ra_next = c;
  sh->ra_end = (uint32_t) end;
  pthread_cond_signal (&sh->ra_wake);
}

/* Claims the next run of absent chunks of the request, at most
 * BC_RA_RUN; returns its length (0: the request is done) and its first
 * chunk in *first.  Called with sh->lock held. */
static unsigned
bc_ra_claim (struct bc_shared *sh, uint32_t *first)
{
  uint32_t c = sh->ra_next;
  unsigned k = 0;

  while (c < sh->ra_end && sh->chunks[c].state != CH_ABSENT)
    c++;
  *first = c;
  for (; c < sh->ra_end && k < BC_RA_RUN &&
         sh->chunks[c].state == CH_ABSENT; c++, k++) {
    sh->chunks[c].state = CH_BUSY;
    sh->cached_bytes += chunk_len (sh, c);
  }
  sh->ra_next = c;
  if (k == 0)
    sh->ra_bc = NULL;
  return k;
}

/* Fetches chunks [first, first + k) into sh->ra_buf, their CRCs into crc,
 * and writes them to the file: 0 stored, 1 fetched but not stored, -1
 * not fetched.  Called without locks. */
static int
bc_ra_fetch (struct basecache *bc, uint32_t first, unsigned k,
             uint32_t *crc)
{
  struct bc_shared *sh = bc->sh;
  uint64_t off = (uint64_t) first * CS;
  size_t len = sh->size - off < (uint64_t) k * CS ?
    (size_t) (sh->size - off) : (size_t) k * CS;
  unsigned j;

  if (bc->fetch (bc->opaque, sh->ra_buf, len, off) == -1)
    return -1;
  bc_add (&sh->stats.fetched_bytes, len);
  for (j = 0; j < k; j++)
    crc[j] = bcfile_crc (sh->ra_buf + (size_t) j * CS,
                         chunk_len (sh, first + j));
  if (bcfile_pwrite (sh->fd, sh->ra_buf, len, sh->data_offset + off) == 0)
    return 0;
  bc_punch (sh->fd, sh->data_offset + off, (uint64_t) k * CS);
  return 1;
}

/* Ends the fill of chunks [first, first + k): PRESENT with records queued
 * if stored, else ABSENT again.  Called with sh->lock held. */
static void
bc_ra_done (struct bc_shared *sh, uint32_t first, unsigned k,
            const uint32_t *crc, bool stored)
{
  uint32_t c;

  for (c = first; c < first + k; c++) {
    struct chunk *ch = &sh->chunks[c];

    if (!stored) {
      ch->state = CH_ABSENT;
      sh->cached_bytes -= chunk_len (sh, c);
      continue;
    }
    ch->crc = crc[c - first];
    ch->gen++;
    ch->state = CH_PRESENT;
    lru_push (sh, c);
    bc_queue_record (sh, c);
  }
  pthread_cond_broadcast (&sh->changed);
}

static void *
bc_ra_thread (void *arg)
{
  struct bc_shared *sh = arg;
  uint32_t crc[BC_RA_RUN], first;
  struct basecache *bc;
  unsigned k;
  int r, e;

  pthread_mutex_lock (&sh->lock);
  for (;;) {
    while (!sh->ra_stop && sh->ra_bc == NULL)
      pthread_cond_wait (&sh->ra_wake, &sh->lock);
    if (sh->ra_stop)
      break;
    bc = sh->ra_bc;
    if ((k = bc_ra_claim (sh, &first)) == 0)
      continue;
    sh->ra_using = bc;
    pthread_mutex_unlock (&sh->lock);
    r = bc_ra_fetch (bc, first, k, crc);
    e = errno;
    pthread_mutex_lock (&sh->lock);
    bc_ra_done (sh, first, k, crc, r == 0);
    if (r == -1) {
      /* As for a reader's failed fill: those who waited for these chunks
       * get its error now, rather than a timeout more each. */
      sh->fail_seq++;
      sh->fail_errno = e;
      sh->ra_bc = NULL;         /* and no more read-ahead until asked */
    }
    sh->ra_using = NULL;        /* basecache_close waits for this */
    pthread_cond_broadcast (&sh->changed);
  }
  pthread_mutex_unlock (&sh->lock);
  return NULL;
}

/* Starts the read-ahead thread if asked for; without memory or a thread
 * the cache runs without read-ahead. */
static void
bc_ra_start (struct bc_shared *sh)
{
  if (sh->ra_window == 0 ||
      (sh->ra_buf = malloc ((size_t) BC_RA_RUN * CS)) == NULL)
    return;
  sh->ra_started = pthread_create (&sh->ra_thread, NULL, bc_ra_thread,
                                   sh) == 0;
}

/* Stops the read-ahead thread; its last fill is done when this returns. */
static void
bc_ra_stop (struct bc_shared *sh)
{
  if (!sh->ra_started)
    return;
  pthread_mutex_lock (&sh->lock);
  sh->ra_stop = true;
  pthread_cond_signal (&sh->ra_wake);
  pthread_mutex_unlock (&sh->lock);
  pthread_join (sh->ra_thread, NULL);
  sh->ra_started = false;
}

/* Makes sure read-ahead no longer uses bc, which is closing. */
static void
bc_ra_forget (struct bc_shared *sh, struct basecache *bc)
{
  pthread_mutex_lock (&sh->lock);
  if (sh->ra_bc == bc)
    sh->ra_bc = NULL;
  while (sh->ra_using == bc)
    pthread_cond_wait (&sh->changed, &sh->lock);
  pthread_mutex_unlock (&sh->lock);
}

/* ---- opening and closing --------------------------------------------- */

static void __attribute__ ((format (printf, 2, 3)))
bc_msg (char **msg, const char *fmt, ...)
{
  va_list ap;
  int e = errno;

  if (msg == NULL)
    return;
  free (*msg);
  va_start (ap, fmt);
  if (vasprintf (msg, fmt, ap) == -1)
    *msg = NULL;
  va_end (ap);
  errno = e;
}

/* Called by bcfile_load_table for each valid record. */
static void
bc_found (void *arg, uint32_t c, uint32_t crc)
{
  struct bc_shared *sh = arg;

  sh->chunks[c].state = CH_STORED;
  sh->chunks[c].crc = crc;
  lru_push (sh, c);
  sh->cached_bytes += chunk_len (sh, c);
}

static void
bc_shared_free (struct bc_shared *sh)
{
  if (sh->fd >= 0)
    close (sh->fd);
  pthread_mutex_destroy (&sh->table_lock);
  pthread_mutex_destroy (&sh->lock);
  pthread_cond_destroy (&sh->changed);
  pthread_cond_destroy (&sh->wake);
  pthread_cond_destroy (&sh->ra_wake);
  free (sh->ra_buf);
  free (sh->pending);
  free (sh->chunks);
  free (sh->path);
  free (sh->uri);
  free (sh);
}

static struct bc_shared *
bc_shared_new (const struct basecache_opts *opts, const struct stat *dir,
               const char *uri, uint64_t size)
{
  struct bc_shared *sh = calloc (1, sizeof *sh);
  uint32_t c;

  if (sh == NULL)
    return NULL;
  sh->fd = -1;
  pthread_mutex_init (&sh->table_lock, NULL);
  pthread_mutex_init (&sh->lock, NULL);
  pthread_cond_init (&sh->changed, NULL);
  pthread_cond_init (&sh->wake, NULL);
  pthread_cond_init (&sh->ra_wake, NULL);
  sh->refs = 1;
  sh->dir_dev = dir->st_dev;
  sh->dir_ino = dir->st_ino;
  sh->size = size;
  sh->max_bytes = opts->max_bytes;
  sh->ra_window = opts->readahead;
  sh->nchunks = bcfile_nchunks (size);
  sh->data_offset = bcfile_data_offset (sh->nchunks);
  sh->lru_head = sh->lru_tail = NIL;
  sh->uri = strdup (uri);
  sh->path = bcfile_path (opts->dir, uri, size);
  sh->chunks = calloc (sh->nchunks ? sh->nchunks : 1, sizeof *sh->chunks);
  if (sh->uri == NULL || sh->path == NULL || sh->chunks == NULL) {
    bc_shared_free (sh);
    errno = ENOMEM;
    return NULL;
  }
  for (c = 0; c < sh->nchunks; c++)
    sh->chunks[c].prev = sh->chunks[c].next = NIL;
  return sh;
}

/* Opens and locks sh's file: 0, 1 if another process holds it, -1. */
static int
bc_file_open (struct bc_shared *sh, char **msg)
{
  int r;

  sh->fd = open (sh->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (sh->fd == -1) {
    bc_msg (msg, "%s: %m", sh->path);
    return -1;
  }
  r = bcfile_lock (sh->fd);
  if (r == -1)
    bc_msg (msg, "%s: locking: %m", sh->path);
  if (r == 1)
    bc_msg (msg, "cache for %s in use by another process (%s): running "
            "uncached", sh->uri, sh->path);
  return r;
}

/* Keys the file to the remote (C4): keeps what a matching file holds,
 * empties any other. */
static int
bc_file_key (struct bc_shared *sh, basecache_fetch_fn fetch, void *opaque,
             char **msg)
{
  struct bcfile_key key = { .uri = sh->uri, .size = sh->size };
  enum bcfile_verdict v;

  if (bcfile_fingerprint (&key, fetch, opaque,
                          &sh->stats.fingerprint_bytes) == -1) {
    bc_msg (msg, "%s: reading the base's fingerprint: %m", sh->uri);
    return -1;
  }
  if (bcfile_check_header (sh->fd, &key, &v) == -1) {
    bc_msg (msg, "%s: reading the header: %m", sh->path);
    return -1;
  }
  if (v == BCFILE_MATCH)
    return bcfile_load_table (sh->fd, sh->nchunks, bc_found, sh) == -1 ?
      (bc_msg (msg, "%s: reading the records: %m", sh->path), -1) : 0;
  if (bcfile_reset (sh->fd, &key) == -1) {
    bc_msg (msg, "%s: emptying the cache file: %m", sh->path);
    return -1;
  }
  if (bcfile_verdict_reason (v))
    bc_msg (msg, "cache for %s discarded: %s", sh->uri,
            bcfile_verdict_reason (v));
  return 0;
}

/* Opens sh's file, keys it and starts its flusher: 0; -1 with errno, or
 * 1 when another process holds the file.  Called without locks: opens
 * of other bases go on while this one fetches its fingerprint. */
static int
bc_shared_setup (struct bc_shared *sh, basecache_fetch_fn fetch,
                 void *opaque, char **msg)
{
  int r = bc_file_open (sh, msg);

  if (r != 0 || bc_file_key (sh, fetch, opaque, msg) == -1)
    return r == 1 ? 1 : -1;
  r = pthread_create (&sh->flusher, NULL, bc_flusher, sh);
  if (r != 0) {
    errno = r;
    bc_msg (msg, "%s: starting the cache's flusher: %m", sh->path);
    return -1;
  }
  bc_make_room (sh);
  bc_ra_start (sh);
  return 0;
}

/* The registry's entry for (dir, uri, size), or NULL.  Called with
 * bc_registry_lock held. */
static struct bc_shared *
bc_registry_find (const struct stat *dir, const char *uri, uint64_t size)
{
  struct bc_shared *sh;

  for (sh = bc_registry; sh; sh = sh->next)
    if (sh->dir_dev == dir->st_dev && sh->dir_ino == dir->st_ino &&
        sh->size == size && strcmp (sh->uri, uri) == 0)
      return sh;
  return NULL;
}

/* Called with bc_registry_lock held. */
static void
bc_registry_remove (struct bc_shared *sh)
{
  struct bc_shared **p;

  for (p = &bc_registry; *p != sh; p = &(*p)->next)
    ;
  *p = sh->next;
}

/* Takes a reference to the entry of (dir, uri, size), waiting while
 * another thread opens it; NULL when there is none.  Called with
 * bc_registry_lock held. */
static struct bc_shared *
bc_registry_ref (const struct stat *dir, const char *uri, uint64_t size)
{
  struct bc_shared *sh;

  while ((sh = bc_registry_find (dir, uri, size)) != NULL && sh->opening)
    pthread_cond_wait (&bc_registry_cond, &bc_registry_lock);
  if (sh)
    sh->refs++;
  return sh;
}

/* Finds or opens the shared cache; NULL with errno, or with errno 0 when
 * the handle is to run uncached.  An entry being opened is in the
 * registry (opening set) so that concurrent opens of the same base wait
 * for it rather than open the file twice; if it fails they try again. */
static struct bc_shared *
bc_registry_get (const struct basecache_opts *opts, const struct stat *dir,
                 const char *uri, uint64_t size, basecache_fetch_fn fetch,
                 void *opaque, char **msg)
{
  struct bc_shared *sh;
  int r, e;

  pthread_mutex_lock (&bc_registry_lock);
  sh = bc_registry_ref (dir, uri, size);
  if (sh == NULL && (sh = bc_shared_new (opts, dir, uri, size)) != NULL) {
    sh->opening = true;
    sh->next = bc_registry;
    bc_registry = sh;
  }
  pthread_mutex_unlock (&bc_registry_lock);
  if (sh == NULL) {
    bc_msg (msg, "%s: cache: %m", uri);
    return NULL;
  }
  if (!sh->opening)
    return sh;
  r = bc_shared_setup (sh, fetch, opaque, msg);
  e = r == 1 ? 0 : errno;
  pthread_mutex_lock (&bc_registry_lock);
  sh->opening = false;
  if (r != 0)
    bc_registry_remove (sh);
  pthread_cond_broadcast (&bc_registry_cond);
  pthread_mutex_unlock (&bc_registry_lock);
  if (r == 0)
    return sh;
  bc_shared_free (sh);
  errno = e;
  return NULL;
}

static int
bc_check_args (const struct basecache_opts *opts, const char *uri,
               uint64_t size, basecache_fetch_fn fetch, struct stat *dir,
               char **msg)
{
  if (opts == NULL || opts->dir == NULL || uri == NULL || fetch == NULL) {
    errno = EINVAL;
    bc_msg (msg, "base cache: missing folder, URI or fetch function");
    return -1;
  }
  if (strlen (uri) > BC_MAX_URI) {
    errno = ENAMETOOLONG;
    bc_msg (msg, "%.64s...: URI too long for the base cache", uri);
    return -1;
  }
  if (size > (uint64_t) BC_MAX_CHUNKS * CS) {
    errno = EFBIG;
    bc_msg (msg, "%s: base too large for the cache", uri);
    return -1;
  }
  if (stat (opts->dir, dir) == -1) {
    bc_msg (msg, "base cache %s: %m", opts->dir);
    return -1;
  }
  if (!S_ISDIR (dir->st_mode)) {
    errno = ENOTDIR;
    bc_msg (msg, "base cache %s: %m", opts->dir);
    return -1;
  }
  return 0;
}

struct basecache *
basecache_open (const struct basecache_opts *opts, const char *uri,
                uint64_t size, basecache_fetch_fn fetch, void *opaque,
                char **msg)
{
  struct basecache *bc;
  struct stat dir;
  int e;

  if (msg)
    *msg = NULL;
  if (bc_check_args (opts, uri, size, fetch, &dir, msg) == -1)
    return NULL;
  bc = calloc (1, sizeof *bc);
  if (bc == NULL) {
    bc_msg (msg, "%s: cache: %m", uri);
    return NULL;
  }
  bc->fetch = fetch;
  bc->opaque = opaque;
  bc->size = size;
  bc->sh = bc_registry_get (opts, &dir, uri, size, fetch, opaque, msg);
  if (bc->sh == NULL && errno != 0) {
    e = errno;
    free (bc);
    errno = e;
    return NULL;
  }
  bc->own.uncached = bc->sh == NULL;
  return bc;
}

void
basecache_get_stats (struct basecache *bc, struct basecache_stats *st)
{
  struct bc_shared *sh = bc->sh;
  const struct basecache_stats *src = sh ? &sh->stats : &bc->own;

  if (sh)
    pthread_mutex_lock (&sh->lock);
  memset (st, 0, sizeof *st);
  st->evicted_bytes = src->evicted_bytes;
  st->fingerprint_bytes = src->fingerprint_bytes;
  st->uncached = src->uncached;
  st->hits = bc_load (&src->hits);
  st->misses = bc_load (&src->misses);
  st->fetched_bytes = bc_load (&src->fetched_bytes);
  if (sh) {
    st->cached_bytes = sh->cached_bytes;
    pthread_mutex_unlock (&sh->lock);
  }
}

/* The last handle: the flusher writes what is queued, then one more sync
 * makes the records durable. */
static void
bc_shared_close (struct bc_shared *sh)
{
  bc_ra_stop (sh);
  pthread_mutex_lock (&sh->lock);
  sh->closing = true;
  pthread_cond_signal (&sh->wake);
  pthread_mutex_unlock (&sh->lock);
  pthread_join (sh->flusher, NULL);
  if (!sh->sync_failed)
    (void) fdatasync (sh->fd);
  bc_shared_free (sh);
}

void
basecache_close (struct basecache *bc)
{
  struct bc_shared *sh = bc ? bc->sh : NULL;
  bool last = false;

  if (sh) {
    bc_ra_forget (sh, bc);
    pthread_mutex_lock (&bc_registry_lock);
    if (--sh->refs == 0) {
      bc_registry_remove (sh);
      last = true;
    }
    pthread_mutex_unlock (&bc_registry_lock);
    if (last)
      bc_shared_close (sh);
  }
  free (bc);
}
