/* SPDX-License-Identifier: BSD-3-Clause */
/* The I/O paths of the cluster formats, written once for QED and qcow2.
 *
 * Every path walks the request as runs (struct cow_run): consecutive
 * guest clusters of one L2 table in the same state.  The lookup of a run
 * holds the format's lock; the data I/O does not.
 *
 * A write goes in place into a run the format says may be written in
 * place (QED: any data cluster; qcow2: a data cluster with COPIED in a
 * table of ours).  Everything else is an allocating write of a run of n
 * clusters, in three steps, each a function of its own:
 *
 *   plan_step (lock held inside): the metadata is ready (else the format
 *     makes it ready without the lock, and the run is looked up again: a
 *     new L2 table, the dirty bit or NEED_CHECK durable, a refcount
 *     structure grown); no other change covers these clusters (else wait
 *     on the format's cond); n clusters reserved at the end of the file;
 *     the change recorded in c->allocs and the L2 table pinned;
 *   write_new_clusters (no lock): the guest data and, around it, the
 *     rest of the first and last cluster: the backing chain's data
 *     (copied file to file with copy_file_range, run by run, in one walk
 *     that also says where it reads as zeros; through memory only from a
 *     remote or compressed backing cluster), the old cluster's (qcow2:
 *     shared or compressed; one pwritev with the guest data), or nothing
 *     where that reads as zeros: the file was grown past the new clusters
 *     beforehand (host_grow_file), so a part not written is a hole;
 *   end_alloc (lock held inside): the L2 entries point at the new
 *     clusters (the table is dirty in the cache; the writeback makes the
 *     entries durable, see below), or the clusters are given back; the
 *     change ends and waiters wake.
 *
 * One sync or two (rule 1 of shared/DESIGN.md, as refined here; the
 * writebacks in qed-table.c and qcow2-table.c keep it).  A writeback
 * writes the dirty tables and syncs.  It syncs once more before it writes
 * them - the data of new clusters durable before any entry that points
 * to it - unless every table change since the last writeback's snapshot
 * is an allocation whose new clusters
 *   - read as zeros before it, all of them, the part the guest wrote
 *     included: a zero cluster, or a backing chain with no data there
 *     (holes, zero clusters, past its end); nothing was copied in; and
 *   - lie wholly inside a file length that an earlier sync made durable
 *     (the file grows in steps of 1 MiB, half a step ahead of the last
 *     cluster, host_grow_file: even the allocation that grows it lands
 *     in the length grown before, which the last flush made durable).
 * Then the data and the entries share one sync.  After a power cut an
 * entry may be durable while the data is not; the cluster lies inside
 * the durable length and was never written before (allocation appends
 * and never reuses a cluster, rule 5), so it reads as zeros (a
 * filesystem returns zeros for a range of a file never durably written:
 * ext4 data=ordered, XFS, btrfs, tmpfs) - which is its old content.
 * Torn data reads, page by page, as the new write or as zeros: new or
 * old again.  Had the cluster held anything but zeros (a fill from the
 * backing chain, a copy of a shared or compressed qcow2 cluster, backing
 * data under the part the guest wrote), a durable entry without its data
 * would read zeros that were never written there; had its length not
 * been durable, the entry would point past the end of the file, which
 * qemu-img check calls corruption (QED) and the check at open drops.
 * Those keep the two syncs, and so do a new L1 entry (written directly,
 * before the entries of its new table: cow_order_tables) and a raised
 * refcount (qcow2 without lazy refcounts: counts durable before the
 * entries that use them; the clusters the file grows by are counted
 * ahead, so an allocation inside a length that a writeback made durable
 * raises none: qcow2-refcount.c, "Counted ahead").  A flush with nothing
 * to write is one sync.
 *
 * The non-blocking calls (cow_pread_nowait, cow_pwrite_nowait) take the
 * same paths, but only try the lock, need tables in the cache, and answer
 * EAGAIN wherever they would wait for another thread or for the format
 * to make its metadata ready.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "cleanup.h"
#include "cow.h"
#include "metacache.h"
#include "minmax.h"
#include "rounding.h"

void
cow_mutex_init (pthread_mutex_t *m)
{
#ifndef NDEBUG
  pthread_mutexattr_t a;

  pthread_mutexattr_init (&a);
  pthread_mutexattr_settype (&a, PTHREAD_MUTEX_ERRORCHECK);
  pthread_mutex_init (m, &a);
  pthread_mutexattr_destroy (&a);
#else
  pthread_mutex_init (m, NULL);
#endif
}

void
cow_assert_not_held (pthread_mutex_t *m)
{
#ifndef NDEBUG
  int e = pthread_mutex_trylock (m);

  if (e == 0) {
    pthread_mutex_unlock (m);
    return;
  }
  /* Held.  An error-checking mutex refuses (EPERM) an unlock by a thread
   * that does not own it; by its owner, the unlock succeeds - and we
   * abort anyway. */
  e = pthread_mutex_unlock (m);
  assert (e == EPERM && "fdatasync with the image's main lock held");
#endif
}

int
cow_sync (struct cow *c)
{
  return host_sync_image (c->img);
}

/* cow_set_header_field's body.  Called with header_lock held. */
static int
set_field (struct cow *c, uint64_t *field, uint64_t value,
           int (*write_header) (void *fmt))
{
  uint64_t saved = *field;

  *field = value;
  if (write_header (c) == -1) {
    *field = saved;
    return -1;
  }
  return 0;
}

int
cow_set_header_field (struct cow *c, uint64_t *field, uint64_t value,
                      int (*write_header) (void *fmt))
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (c->header_lock);

  return set_field (c, field, value, write_header);
}

int
cow_set_mark (struct cow *c, bool on, uint64_t *features, uint64_t bit,
              int (*write_header) (void *fmt))
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (c->header_lock);

  if (c->marked == on)
    return 0;
  if (features &&
      set_field (c, features, on ? *features | bit : *features & ~bit,
                 write_header) == -1)
    return -1;
  __atomic_store_n (&c->marked, on, __ATOMIC_RELEASE);
  return 0;
}

int
cow_cut_and_sync (struct cow *c)
{
  int r;

  pthread_mutex_lock (&c->lock);
  r = host_trim_file (c->img, &c->file_length, c->file_end);
  pthread_mutex_unlock (&c->lock);
  if (r == -1)
    return -1;
  if (cow_sync (c) == -1)
    return error_syscall (c->img, "fdatasync");
  return 0;
}

void
cow_add_cache_stats (const struct metacache *mc, struct image_stats *st)
{
  mc_get_stats (mc, &st->cache_hits, &st->cache_misses,
                &st->cache_evictions);
  st->cache_bytes += mc_bytes (mc);
}

bool
cow_flush_begin (struct cow *c, uint64_t *lengths)
{
  *lengths = __atomic_load_n (&c->img->length_changes, __ATOMIC_RELAXED);
  return __atomic_exchange_n (&c->order_pending, false, __ATOMIC_ACQ_REL);
}

void
cow_flush_end (struct cow *c, uint64_t lengths, bool ordered, int r)
{
  if (r == 0 && lengths > c->synced_lengths)
    c->synced_lengths = lengths;
  if (r == -1 && ordered)
    cow_order_tables (c);
}

void
cow_order_tables (struct cow *c)
{
  __atomic_store_n (&c->order_pending, true, __ATOMIC_RELEASE);
}

/* The power-loss test's negative control (tests/test-fault-powercut.sh):
 * read only when that variable is set, and loudly. */
static bool
unsafe_one_sync (void)
{
  const char *s = getenv ("COWBD_TEST_UNSAFE_ONE_SYNC");

  if (s == NULL || strcmp (s, "1") != 0)
    return false;
  engine_warn ("COWBD_TEST_UNSAFE_ONE_SYNC=1: flushes break crash-ordering "
               "rule 1 on purpose (a test's negative control)");
  return true;
}

void
cow_init (struct cow *c, struct image *img, const struct cow_ops *ops)
{
  *c = (struct cow) {
    .img = img, .ops = ops, .unsafe_one_sync = unsafe_one_sync (),
  };
  pthread_mutex_init (&c->writeback_lock, NULL);
  cow_mutex_init (&c->lock);
  pthread_cond_init (&c->cond, NULL);
  img->main_lock = &c->lock;
}

void
cow_init_header_lock (struct cow *c, pthread_mutex_t *header_lock)
{
  pthread_mutex_init (header_lock, NULL);
  c->header_lock = header_lock;
}

void
cow_destroy (struct cow *c)
{
  if (c->img && c->img->main_lock == &c->lock)
    c->img->main_lock = NULL;
  mc_free (c->l2_cache);
  mc_table_release (&c->l1);
  overlap_free (&c->meta);
  pthread_mutex_destroy (&c->writeback_lock);
  if (c->header_lock)
    pthread_mutex_destroy (c->header_lock);
  pthread_mutex_destroy (&c->lock);
  pthread_cond_destroy (&c->cond);
}

/* ---- metadata overlap --------------------------------------------------- */

static int
refuse_corrupt (struct cow *c)
{
  return error_file (c->img, EIO, "the image is marked corrupt (a write "
                     "would have landed on its metadata): repair it with "
                     "cowbd-img check -r all");
}

int
cow_check_target (struct cow *c, uint64_t host, uint64_t len,
                  uint64_t offset)
{
  const struct overlap_range *m = overlap_find (&c->meta, host, len);
  char guest[48] = "";

  if (m == NULL)
    return 0;
  __atomic_store_n (&c->corrupt, true, __ATOMIC_RELEASE);
  if (offset != UINT64_MAX)
    snprintf (guest, sizeof guest, " (guest offset %" PRIu64 ")", offset);
  engine_warn ("%s: preventing a write on metadata: host offset 0x%" PRIx64
               "%s lies in the %s at 0x%" PRIx64 "; the image is marked "
               "corrupt", c->img->filename, host, guest, m->what, m->start);
  return error_file (c->img, EIO, "preventing a write on metadata: host "
                     "offset 0x%" PRIx64 "%s lies in the %s at 0x%" PRIx64
                     ": the image is marked corrupt", host, guest, m->what,
                     m->start);
}

int
cow_end_corrupt (struct cow *c)
{
  struct error_saved e;

  if (!__atomic_load_n (&c->corrupt, __ATOMIC_ACQUIRE) ||
      c->ops->mark_corrupt == NULL ||
      __atomic_exchange_n (&c->corrupt_marked, true, __ATOMIC_ACQ_REL))
    return -1;
  error_save (&e);
  c->ops->mark_corrupt (c);
  error_restore (&e);
  return -1;
}

static int
must_wait (void)
{
  errno = EAGAIN;
  return -1;
}

int
cow_lookup (struct cow *c, uint64_t offset, uint64_t count,
            struct cow_run *r)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&c->lock);
  return c->ops->lookup (c, offset, count, false, r);
}

/* The lookup of a read or a block status (lock held): a table it had to
 * load is made compact at once if it qualifies (metacache.h), so that a
 * thin image's tables never fill the cache with dense copies.  Writes'
 * lookups keep theirs dense, for the change that follows. */
static int
lookup_to_read (struct cow *c, uint64_t offset, uint64_t count,
                struct cow_run *r)
{
  if (c->ops->lookup (c, offset, count, false, r) == -1)
    return -1;
  if (r->l2_loaded)
    mc_compact_loaded (c->l2_cache, r->l2);
  return 0;
}

static int
read_lookup (struct cow *c, uint64_t offset, uint64_t count,
             struct cow_run *r)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&c->lock);
  return lookup_to_read (c, offset, count, r);
}

/* Looks the run up without waiting: a contended lock or a table not in
 * the cache is EAGAIN.  For a write, so is a corrupt image or a run on
 * metadata (the blocking path says what is wrong). */
static int
lookup_nowait (struct cow *c, uint64_t offset, uint64_t count, bool write,
               struct cow_run *r)
{
  int ret;

  if (pthread_mutex_trylock (&c->lock) != 0)
    return must_wait ();
  ret = c->ops->lookup (c, offset, count, true, r);
  if (ret == 0 && write &&
      (__atomic_load_n (&c->corrupt, __ATOMIC_ACQUIRE) ||
       (r->kind == COW_DATA &&
        overlap_find (&c->meta, r->host, r->len) != NULL)))
    ret = must_wait ();
  pthread_mutex_unlock (&c->lock);
  return ret;
}

/* ---- read --------------------------------------------------------------- */

static int
read_compressed (struct cow *c, const struct cow_run *r, uint8_t *p,
                 uint64_t offset)
{
  uint64_t cs = 1ULL << c->cluster_bits;
  CLEANUP_FREE uint8_t *tmp = malloc (cs);

  if (tmp == NULL)
    return error_file (c->img, ENOMEM, "out of memory");
  if (c->ops->read_compressed (c, r->entry, tmp) == -1)
    return -1;
  memcpy (p, tmp + (offset & (cs - 1)), r->len);
  return 0;
}

static int
read_run (struct cow *c, const struct cow_run *r, uint8_t *p,
          uint64_t offset)
{
  struct image *img = c->img;

  switch (r->kind) {
  case COW_DATA:
    if (source_pread (img->src, p, r->len, r->host) == -1)
      return error_file (img, errno, "reading offset %" PRIu64 ": %s",
                         offset, strerror (errno));
    return 0;
  case COW_ZERO:
    memset (p, 0, r->len);
    return 0;
  case COW_UNALLOC:
    return chain_read_backing (img, p, r->len, offset);
  case COW_COMPRESSED:
    return read_compressed (c, r, p, offset);
  case COW_INVALID:
    return c->ops->invalid (c, r, offset);
  }
  abort ();
}

/* Compressed and invalid clusters go to the blocking path (which
 * decompresses, or says what is wrong). */
static int
read_run_nowait (struct cow *c, const struct cow_run *r, uint8_t *p,
                 uint64_t offset)
{
  switch (r->kind) {
  case COW_DATA:
    return host_pread_nowait (c->img, p, r->len, r->host);
  case COW_ZERO:
    memset (p, 0, r->len);
    return 0;
  case COW_UNALLOC:
    return chain_read_backing_nowait (c->img, p, r->len, offset);
  default:
    return must_wait ();
  }
}

/* Reads run by run; nowait: fails with EAGAIN instead of waiting.
 * Inline, so that each caller gets its own loop with nowait constant. */
static inline __attribute__ ((always_inline)) int
pread_runs (struct image *img, void *buf, size_t count, uint64_t offset,
            bool nowait)
{
  struct cow *c = img->priv;
  uint8_t *p = buf;

  while (count > 0) {
    struct cow_run r;

    if (nowait ? lookup_nowait (c, offset, count, false, &r) == -1 ||
                 read_run_nowait (c, &r, p, offset) == -1
               : read_lookup (c, offset, count, &r) == -1 ||
                 read_run (c, &r, p, offset) == -1)
      return -1;
    p += r.len;
    offset += r.len;
    count -= r.len;
  }
  return 0;
}

int
cow_pread (struct image *img, void *buf, size_t count, uint64_t offset)
{
  return pread_runs (img, buf, count, offset, false);
}

int
cow_pread_nowait (struct image *img, void *buf, size_t count,
                  uint64_t offset)
{
  return pread_runs (img, buf, count, offset, true);
}

/* ---- allocating writes -------------------------------------------------- */

/* What one step of a write does, decided under the lock by plan_step. */
struct cow_step {
  enum { STEP_IN_PLACE, STEP_AGAIN, STEP_PREPARE, STEP_ALLOC } what;
  struct cow_run r;
  int need;                     /* STEP_PREPARE: for make_ready */
  uint64_t first, n;            /* STEP_ALLOC: guest clusters */
  uint64_t len;                 /* STEP_ALLOC: guest bytes written */
  uint64_t host;                /* STEP_ALLOC: the new clusters */
  struct inflight a;            /* STEP_ALLOC: in c->allocs */
  uint64_t lengths;             /* STEP_ALLOC: img->length_changes after
                                   the reservation */
  bool ordered;                 /* STEP_ALLOC: the new clusters held
                                   more than zeros (two syncs) */
};

/* Whether the clusters of s may change now (lock held): shortens s->n to
 * stop before a change in flight that starts later, waits for one that
 * covers the first cluster, and asks the format.  0 ready, 1 not (s->what
 * says why), -1 error. */
static int
ready_for_change (struct cow *c, struct cow_step *s, bool alloc,
                  bool nowait)
{
  struct inflight *a = inflight_find (c->allocs, s->first, s->n);
  int ret;

  if (a && a->first <= s->first) {
    if (nowait)
      return must_wait ();
    pthread_cond_wait (&c->cond, &c->lock);
    s->what = STEP_AGAIN;
    return 1;
  }
  if (a)
    s->n = a->first - s->first;
  if (c->broken)
    return cow_broken_error (c);
  ret = c->ops->check_ready (c, &s->r, alloc ? s->n << c->cluster_bits : 0);
  if (ret <= 0)
    return ret;
  if (nowait)
    return must_wait ();
  if (ret == COW_WAIT) {
    pthread_cond_wait (&c->cond, &c->lock);
    s->what = STEP_AGAIN;
    return 1;
  }
  s->what = STEP_PREPARE;
  s->need = ret;
  return 1;
}

/* A write reached an invalid entry: refused.  One that names metadata
 * (QED rejects an entry on its L1 table at lookup) is a write on
 * metadata like any other, and marks the image corrupt. */
static int
invalid_target (struct cow *c, const struct cow_run *r, uint64_t offset)
{
  uint64_t host = r->entry & COW_ENTRY_OFFSET_MASK;

  if (!r->bad_table && host != 0 &&
      cow_check_target (c, host, 1ULL << c->cluster_bits, offset) == -1)
    return -1;
  return c->ops->invalid (c, r, offset);
}

/* The run at offset that a change is about to touch: refused if the
 * image is marked corrupt or the run is invalid.  Called with the lock
 * held. */
static int
lookup_target (struct cow *c, uint64_t offset, uint64_t count,
               struct cow_run *r)
{
  if (__atomic_load_n (&c->corrupt, __ATOMIC_ACQUIRE))
    return refuse_corrupt (c);
  if (c->ops->lookup (c, offset, count, false, r) == -1)
    return -1;
  if (r->kind == COW_INVALID)
    return invalid_target (c, r, offset);
  return 0;
}

/* The img->length_changes as of which the file's length covers the new
 * clusters of s, reserved when it was `before`: the same if the
 * reservation did not grow the file, or grew it once with the clusters
 * inside the length before (host_grow_file grows ahead).  Lock held. */
static uint64_t
covering_length (struct cow *c, const struct cow_step *s, uint64_t before)
{
  uint64_t now = __atomic_load_n (&c->img->length_changes, __ATOMIC_RELAXED);
  uint64_t end = s->host + (s->n << c->cluster_bits);

  if (now == before ||
      (now == before + 1 &&
       end <= __atomic_load_n (&c->img->grown_from, __ATOMIC_RELAXED)))
    return before;
  return now;
}

/* Looks up the run at offset and decides what to do with it; for an
 * allocation, reserves the clusters and records the change (end_alloc
 * ends it). */
static int
plan_step (struct cow *c, uint64_t offset, uint64_t count, bool nowait,
           struct cow_step *s)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&c->lock);
  uint64_t cs = 1ULL << c->cluster_bits, in = offset & (cs - 1), lengths;
  int64_t host;
  int ret;

  if (lookup_target (c, offset, count, &s->r) == -1)
    return -1;
  if (s->r.kind == COW_DATA && s->r.in_place) {
    s->what = STEP_IN_PLACE;
    return cow_check_target (c, s->r.host, s->r.len, offset);
  }
  s->first = offset >> c->cluster_bits;
  s->n = DIV_ROUND_UP (in + s->r.len, cs);
  ret = ready_for_change (c, s, true, nowait);
  if (ret != 0)
    return ret == 1 ? 0 : -1;
  lengths = __atomic_load_n (&c->img->length_changes, __ATOMIC_RELAXED);
  host = c->ops->reserve (c, s->n);
  if (host == -1)
    return -1;
  s->what = STEP_ALLOC;
  s->host = (uint64_t) host;
  s->lengths = covering_length (c, s, lengths);
  s->ordered = true;
  s->len = MIN (s->r.len, s->n * cs - in);
  inflight_add (&c->allocs, &s->a, s->first, s->n);
  s->r.l2->pins++;
  return 0;
}

/* Links the new clusters (ret == 0) or gives them back, and ends the
 * change plan_step recorded.  The next writeback syncs the data before
 * it writes the entries unless the clusters held only zeros and lie in a
 * durable length ("One sync or two", above). */
static int
end_alloc (struct cow *c, struct cow_step *s, int ret)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&c->lock);

  if (ret == 0) {
    if (s->ordered || s->lengths > c->synced_lengths)
      cow_order_tables (c);
    ret = c->ops->link (c, &s->r, s->n, s->host);
  }
  else
    c->ops->give_back (c, s->host, s->n);
  s->r.l2->pins--;
  inflight_remove (&c->allocs, &s->a);
  pthread_cond_broadcast (&c->cond);
  return ret;
}

/* Fills [guest, guest + len) of a new run into *buf (malloc'd), or leaves
 * *buf NULL where it reads as zeros (the new cluster stays a hole there).
 * old: the old run's data in the file (qcow2 shared data) or in memory
 * (a decompressed cluster), at guest offset old_guest.  A run over the
 * backing chain is filled by write_over_backing instead. */
static int
fill_part (struct cow *c, const struct cow_step *s, const uint8_t *cluster,
           uint64_t old_guest, uint64_t guest, uint64_t len, uint8_t **buf)
{
  *buf = NULL;
  if (len == 0 || s->r.kind == COW_ZERO)
    return 0;
  *buf = malloc (len);
  if (*buf == NULL)
    return error_file (c->img, ENOMEM, "out of memory");
  if (s->r.kind == COW_COMPRESSED) {
    memcpy (*buf, cluster + (guest - old_guest), len);
    return 0;
  }
  assert (s->r.kind == COW_DATA);
  if (source_pread (c->img->src, *buf, len,
                  s->r.host - (s->r.host & ((1ULL << c->cluster_bits) - 1))
                  + (guest - old_guest)) == -1)
    return error_file (c->img, errno, "reading a cluster to copy: %s",
                       strerror (errno));
  return 0;
}

/* Whether the new run of s held anything but zeros before the write at
 * offset (filled: a fill from below was written around it).  Called
 * without the lock. */
static bool
held_data (struct cow *c, const struct cow_step *s, uint64_t offset,
           bool filled)
{
  switch (s->r.kind) {
  case COW_ZERO:
    return false;
  case COW_UNALLOC:
    return filled || !chain_backing_is_zero (c->img, offset, s->len);
  default:
    return true;
  }
}

/* write_new_clusters of a run that reads through to the backing chain:
 * the guest data written, the fills around it copied from the chain file
 * to file in the kernel (no pass through our memory, which cost a read
 * into a fresh buffer and a write out of it per allocation). */
static int
write_over_backing (struct cow *c, struct cow_step *s, const uint8_t *buf,
                    uint64_t offset, uint64_t head, uint64_t tail)
{
  uint64_t first = offset - head, end = offset + s->len;
  bool copied_head, copied_tail;

  if (host_pwrite (c->img->fd, buf, s->len, s->host + head) == -1)
    return error_file (c->img, errno, "writing new clusters at 0x%" PRIx64
                       ": %s", s->host, strerror (errno));
  if (chain_copy_fill (c->img, first, head, s->host, &copied_head) == -1 ||
      chain_copy_fill (c->img, end, tail, s->host + head + s->len,
                       &copied_tail) == -1)
    return -1;
  s->ordered = !c->unsafe_one_sync &&
    held_data (c, s, offset, copied_head || copied_tail);
  return 0;
}

/* Writes the new run of s: the guest data at offset and the fills
 * around it; s->ordered says whether the run held data before.  Called
 * without the lock. */
static int
write_new_clusters (struct cow *c, struct cow_step *s,
                    const uint8_t *buf, uint64_t offset)
{
  uint64_t cs = 1ULL << c->cluster_bits, first = s->first * cs;
  uint64_t head = offset - first, tail = s->n * cs - head - s->len;
  uint64_t start = s->host + head;
  CLEANUP_FREE uint8_t *cluster = NULL;
  CLEANUP_FREE uint8_t *hb = NULL;
  CLEANUP_FREE uint8_t *tb = NULL;
  struct iovec iov[3];
  int iovcnt = 0;

  if (s->r.kind == COW_UNALLOC && (head || tail))
    return write_over_backing (c, s, buf, offset, head, tail);
  if (s->r.kind == COW_COMPRESSED && (head || tail)) {
    cluster = malloc (cs);
    if (cluster == NULL)
      return error_file (c->img, ENOMEM, "out of memory");
    if (c->ops->read_compressed (c, s->r.entry, cluster) == -1)
      return -1;
  }
  if (fill_part (c, s, cluster, first, first, head, &hb) == -1 ||
      fill_part (c, s, cluster, first, offset + s->len, tail, &tb) == -1)
    return -1;
  if (hb) {
    iov[iovcnt++] = (struct iovec) { hb, head };
    start = s->host;
  }
  iov[iovcnt++] = (struct iovec) { (void *) buf, s->len };
  if (tb)
    iov[iovcnt++] = (struct iovec) { tb, tail };
  if (host_pwritev (c->img->fd, iov, iovcnt, start) == -1)
    return error_file (c->img, errno, "writing new clusters at 0x%" PRIx64
                       ": %s", s->host, strerror (errno));
  s->ordered = !c->unsafe_one_sync &&
    held_data (c, s, offset, hb != NULL || tb != NULL);
  return 0;
}

/* ---- write -------------------------------------------------------------- */

/* One step of a write at offset; *done is the bytes written (0: look
 * again). */
static int
write_step (struct cow *c, const uint8_t *p, uint64_t count,
            uint64_t offset, bool nowait, uint64_t *done)
{
  struct cow_step s;
  int ret;

  *done = 0;
  if (plan_step (c, offset, count, nowait, &s) == -1)
    return cow_end_corrupt (c);
  switch (s.what) {
  case STEP_IN_PLACE:
    if (source_pwrite (c->img->src, p, s.r.len, s.r.host) == -1)
      return error_file (c->img, errno, "writing offset %" PRIu64 ": %s",
                         offset, strerror (errno));
    *done = s.r.len;
    return 0;
  case STEP_AGAIN:
    return 0;
  case STEP_PREPARE:
    return c->ops->make_ready (c, s.need, &s.r,
                               s.n << c->cluster_bits) == -1 ? -1 : 0;
  case STEP_ALLOC:
    ret = write_new_clusters (c, &s, p, offset);
    if (end_alloc (c, &s, ret) == -1)
      return -1;
    *done = s.len;
    return 0;
  }
  abort ();
}

static int
write_runs (struct cow *c, const uint8_t *p, uint64_t count,
            uint64_t offset, bool nowait)
{
  while (count > 0) {
    uint64_t done;

    if (write_step (c, p, count, offset, nowait, &done) == -1)
      return -1;
    p += done;
    offset += done;
    count -= done;
  }
  return 0;
}

int
cow_finish_write (struct cow *c, unsigned flags)
{
  bool over;

  if (flags & IMAGE_FUA)
    return c->ops->writeback (c);
  pthread_mutex_lock (&c->lock);
  over = c->ops->over_budget (c);
  pthread_mutex_unlock (&c->lock);
  return over ? c->ops->writeback (c) : 0;
}

int
cow_pwrite (struct image *img, const void *buf, size_t count,
            uint64_t offset, unsigned flags)
{
  struct cow *c = img->priv;

  if (write_runs (c, buf, count, offset, false) == -1)
    return -1;
  return cow_finish_write (c, flags);
}

/* With the whole chain in memory nothing waits for I/O: the write runs
 * as usual, refusing only what would wait for another thread.  Otherwise
 * only an overwrite in place of one contiguous run, in one RWF_NOWAIT
 * call. */
int
cow_pwrite_nowait (struct image *img, const void *buf, size_t count,
                   uint64_t offset, unsigned flags)
{
  struct cow *c = img->priv;
  struct cow_run r;

  if (img->chain_in_memory) {
    if (write_runs (c, buf, count, offset, true) == -1)
      return -1;
    return cow_finish_write (c, flags);
  }
  if (lookup_nowait (c, offset, count, true, &r) == -1)
    return -1;
  if (r.kind != COW_DATA || !r.in_place || r.len != count)
    return must_wait ();
  return host_pwrite_nowait (img, buf, count, r.host);
}

int
cow_write_zeros (struct cow *c, uint64_t len, uint64_t offset)
{
  while (len > 0) {
    uint64_t m = MIN (len, (uint64_t) HOST_ZEROS_SIZE);
    if (write_runs (c, host_zeros, m, offset, false) == -1)
      return -1;
    offset += m;
    len -= m;
  }
  return 0;
}

/* ---- compressed writes (qcow2) ------------------------------------------ */

/* Whether the run may take a compressed cluster: nothing there yet.  As
 * qemu (qcow2_alloc_compressed_cluster_offset), a zero flag without a
 * host cluster counts as nothing. */
static bool
takes_compressed (const struct cow_run *r)
{
  return r->kind == COW_UNALLOC ||
         (r->kind == COW_ZERO && (r->entry & COW_ENTRY_OFFSET_MASK) == 0);
}

/* plan_step for a compressed cluster at offset of len bytes. */
static int
plan_compressed (struct cow *c, uint64_t offset, uint64_t len,
                 struct cow_step *s)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&c->lock);
  int ret;

  if (__atomic_load_n (&c->corrupt, __ATOMIC_ACQUIRE))
    return refuse_corrupt (c);
  if (c->ops->lookup (c, offset, 1ULL << c->cluster_bits, false,
                      &s->r) == -1)
    return -1;
  if (s->r.kind == COW_INVALID)
    return invalid_target (c, &s->r, offset);
  if (!takes_compressed (&s->r))
    return error_file (c->img, EIO, "compressed write at offset %" PRIu64
                       ": compressed writes only to unallocated clusters",
                       offset);
  s->first = offset >> c->cluster_bits;
  s->n = 1;
  ret = ready_for_change (c, s, true, false);
  if (ret != 0)
    return ret == 1 ? 0 : -1;
  if (c->ops->zreserve (c, len, &s->host) == -1)
    return -1;
  s->what = STEP_ALLOC;
  s->len = len;
  inflight_add (&c->allocs, &s->a, s->first, 1);
  s->r.l2->pins++;
  return 0;
}

/* end_alloc for a compressed cluster. */
static int
end_compressed (struct cow *c, struct cow_step *s, int ret)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&c->lock);

  if (ret == 0)
    ret = c->ops->zlink (c, &s->r, s->host, s->len);
  else
    c->ops->zgive_back (c, s->host, s->len);
  s->r.l2->pins--;
  inflight_remove (&c->allocs, &s->a);
  pthread_cond_broadcast (&c->cond);
  return ret;
}

int
cow_write_compressed (struct cow *c, const void *z, uint64_t len,
                      uint64_t offset)
{
  struct cow_step s;
  int ret = 0;

  assert (c->ops->zreserve && (offset & ((1ULL << c->cluster_bits) - 1))
          == 0 && len < (1ULL << c->cluster_bits));
  do {
    if (plan_compressed (c, offset, len, &s) == -1)
      return cow_end_corrupt (c);
    if (s.what == STEP_PREPARE &&
        c->ops->make_ready (c, s.need, &s.r, 1ULL << c->cluster_bits) == -1)
      return -1;
  } while (s.what != STEP_ALLOC);
  /* Rule 1: the entry zlink sets reaches the disk only in a writeback,
   * which syncs these bytes first. */
  if (host_pwrite (c->img->fd, z, len, s.host) == -1)
    ret = error_file (c->img, errno, "writing a compressed cluster at 0x%"
                      PRIx64 ": %s", s.host, strerror (errno));
  if (end_compressed (c, &s, ret) == -1)
    return -1;
  return cow_finish_write (c, 0);
}

/* ---- zero and trim helpers ---------------------------------------------- */

int
cow_target_ok (struct cow *c, uint64_t host, uint64_t len)
{
  int r;

  pthread_mutex_lock (&c->lock);
  if (__atomic_load_n (&c->corrupt, __ATOMIC_ACQUIRE))
    r = refuse_corrupt (c);
  else
    r = cow_check_target (c, host, len, UINT64_MAX);
  pthread_mutex_unlock (&c->lock);
  return r == -1 ? cow_end_corrupt (c) : 0;
}

int
cow_punch (struct cow *c, uint64_t host, uint64_t len)
{
  if (cow_target_ok (c, host, len) == -1)
    return -1;                  /* the range is metadata */
  host_may_have_holes (c->img);
  if (host_punch_hole (c->img->fd, len, host) == -1 && errno != EOPNOTSUPP)
    return error_syscall (c->img, "punch hole");
  return 0;
}

uint64_t
cow_partial_len (const struct cow *c, const struct cow_run *r,
                 uint64_t offset)
{
  uint64_t cs = 1ULL << c->cluster_bits, in = offset & (cs - 1);

  if (in)
    return r->len < cs - in ? r->len : cs - in;
  return r->len < cs ? r->len : 0;
}

int
cow_zero_by_write (struct cow *c, uint64_t len, uint64_t offset,
                   unsigned flags, const char *why)
{
  if (flags & IMAGE_FAST_ZERO)
    return error_file (c->img, ENOTSUP, "fast zero: %s", why);
  return cow_write_zeros (c, len, offset);
}

int
cow_broken_error (struct cow *c)
{
  return error_file (c->img, EIO, "an earlier metadata write failed; "
                     "the image needs a check");
}

int
cow_zero_in_place (struct cow *c, uint64_t host, uint64_t len,
                   unsigned flags)
{
  int fd = c->img->fd;

  if (cow_target_ok (c, host, len) == -1)
    return -1;

  host_may_have_holes (c->img);
  if ((flags & IMAGE_MAY_TRIM) && host_punch_hole (fd, len, host) == 0)
    return 0;
  if (host_write_zeroes_fast (fd, len, host) == 0)
    return 0;
  if (flags & IMAGE_FAST_ZERO)
    return error_file (c->img, ENOTSUP, "fast zero: the host file cannot "
                       "zero quickly");
  if (host_write_zeroes (fd, len, host, false) == -1)
    return error_syscall (c->img, "write zeroes");
  return 0;
}

int
cow_walk (struct cow *c, uint64_t count, uint64_t offset, unsigned flags,
          cow_run_fn fn)
{
  while (count > 0) {
    struct cow_run r;
    uint64_t done;

    if (cow_lookup (c, offset, count, &r) == -1)
      return -1;
    done = r.len;
    if (fn (c, &r, offset, flags, &done) == -1)
      return -1;
    offset += done;
    count -= done;
  }
  return 0;
}

/* cow_run_fn: a fast zero must fail before it changes anything if any
 * part of run r - its head, its whole clusters, its tail - would need a
 * copy on write. */
static int
fast_zero_run (struct cow *c, const struct cow_run *r, uint64_t offset,
               unsigned flags, uint64_t *done)
{
  const struct cow_ops *ops = c->ops;
  uint64_t cs = 1ULL << c->cluster_bits, in = offset & (cs - 1);
  uint64_t head = in == 0 ? 0 : r->len < cs - in ? r->len : cs - in;
  uint64_t whole = (r->len - head) & ~(cs - 1);
  uint64_t tail = r->len - head - whole;

  if (r->kind == COW_INVALID)
    return ops->invalid (c, r, offset);
  if ((head && !ops->zero_partial_fast (c, r, head, offset)) ||
      (whole && !ops->zero_whole_fast (c, r, whole, offset + head)) ||
      (tail && !ops->zero_partial_fast (c, r, tail, offset + head + whole)))
    return error_file (c->img, ENOTSUP, "fast zero: part of the range "
                       "needs a copy on write");
  return 0;
}

int
cow_zero (struct cow *c, uint64_t count, uint64_t offset, unsigned flags,
          cow_run_fn zero)
{
  if ((flags & IMAGE_FAST_ZERO) &&
      cow_walk (c, count, offset, flags, fast_zero_run) == -1)
    return -1;
  if (cow_walk (c, count, offset, flags, zero) == -1)
    return -1;
  return cow_finish_write (c, flags);
}

int
cow_trim (struct cow *c, uint64_t count, uint64_t offset, unsigned flags,
          cow_run_fn trim)
{
  if (cow_walk (c, count, offset, flags, trim) == -1)
    return -1;
  return (flags & IMAGE_FUA) ? c->ops->writeback (c) : 0;
}

/* One try of cow_change, under the lock. */
static int
change_step (struct cow *c, uint64_t offset, uint64_t len, cow_set_fn set,
             void *arg, struct cow_step *s, uint64_t *done)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&c->lock);
  int ret;

  *done = 0;
  if (lookup_target (c, offset, len, &s->r) == -1)
    return -1;
  /* Dropping a cluster that is metadata would free (and punch) it. */
  if (s->r.kind == COW_DATA &&
      cow_check_target (c, s->r.host, s->r.len, offset) == -1)
    return -1;
  s->what = STEP_ALLOC;
  s->first = offset >> c->cluster_bits;
  s->n = s->r.len >> c->cluster_bits;
  if (s->n == 0)
    return 0;
  ret = ready_for_change (c, s, false, false);
  if (ret != 0)
    return ret;
  ret = set (c, &s->r, s->n, arg);
  if (ret == 0)
    *done = s->n << c->cluster_bits;
  return ret == -1 ? -1 : 0;
}

int
cow_change (struct cow *c, uint64_t offset, uint64_t len, cow_set_fn set,
            void *arg, uint64_t *done)
{
  struct cow_step s;

  if (change_step (c, offset, len, set, arg, &s, done) == -1)
    return cow_end_corrupt (c);
  if (*done == 0 && s.what == STEP_PREPARE)
    return c->ops->make_ready (c, s.need, &s.r, 0);
  return 0;
}

/* ---- block status ------------------------------------------------------- */

int
cow_block_status (struct image *img, uint64_t offset, uint64_t count,
                  struct drv_status *st)
{
  struct cow *c = img->priv;
  struct cow_run r;

  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&c->lock);
    if (lookup_to_read (c, offset, count, &r) == -1)
      return -1;
    if (c->ops->host_checked)
      st->host_checked = c->ops->host_checked (c);
  }
  st->length = r.len;
  st->host_offset = -1;
  switch (r.kind) {
  case COW_DATA:
    st->kind = DRV_DATA;
    st->host_offset = (int64_t) r.host;
    return 0;
  case COW_COMPRESSED:
    st->kind = DRV_DATA;
    st->compressed = true;
    return 0;
  case COW_ZERO:
    st->kind = DRV_ZERO;
    return 0;
  case COW_UNALLOC:
    st->kind = DRV_UNALLOCATED;
    return 0;
  case COW_INVALID:
    return c->ops->invalid (c, &r, offset);
  }
  abort ();
}
