/* SPDX-License-Identifier: BSD-3-Clause */
/* The check and repair on damaged images, built once per cluster format
 * (test-engine-repair-qed, -qcow2), made by patching an image written
 * through the engine; each time our check's counters are compared with
 * what qemu-img check reports on the same file (qcow2: corruptions,
 * leaks, allocated, fragmented and compressed clusters, image end
 * offset; QED, where qemu-img check reports less: corruptions and
 * leaks).  Both formats:
 *
 *  - a leak in the middle of the file (an L2 entry cleared, as a crash in
 *    the middle of a writeback can leave it): check counts it.  QED: a
 *    read-write open of the image marked NEED_CHECK repairs it by moving
 *    the last data cluster into the hole, so the file shrinks by one
 *    cluster; qcow2: check -r leaks gives it back (refcount 0, hole
 *    punched).  Every other cluster still reads its data;
 *  - bad entries: reads fail with EIO rather than read garbage, check
 *    reports three corruptions and REPAIR_ERRORS drops them.  QED: an
 *    entry past the end of the file, one onto the L1 table, a second
 *    reference to a cluster; qcow2: past the end of the file, reserved
 *    bits, misaligned;
 *  - leaks at the end of the file: REPAIR_LEAKS truncates them.
 *
 * qcow2 only (its refcounts and flags):
 *  - dirty bit with refcounts lagging behind (lazy refcounts after a
 *    crash) and a leaked count: a read-write open rebuilds them;
 *  - COPIED missing on a cluster whose refcount is 1: a write copies the
 *    cluster (as for a shared one) and frees the old, which leaves a
 *    clean image; the check reports and repairs the flag too;
 *  - the corrupt bit: refused read-write, allowed read-only, cleared by a
 *    repair;
 *  - a compressed, fragmented image made by qemu: the same counters.
 *
 * After each repair, qemu-img check must find nothing.
 */
#include <config.h>

#include <fcntl.h>

#include "engine-test.h"
#include "byte-swapping.h"

#define CS ((uint64_t) 4096)
#define NCL 64                  /* clusters written */
#define SIZE (NCL * CS)
#define QCOW2_OFFSET_MASK 0x00fffffffffffe00ULL

static uint8_t model[SIZE];
static const char *img_file;

/* ---- reading and patching the file -------------------------------------- */

/* A 64-bit field in the format's byte order (QED little, qcow2 big). */
static uint64_t
get64 (int fd, uint64_t off)
{
  uint8_t b[8];

  if (pread (fd, b, 8, (off_t) off) != 8)
    die ("pread at %" PRIu64, off);
  return fmt_is ("qed") ? le64_load (b) : be64_load (b);
}

static void
put64 (int fd, uint64_t off, uint64_t v)
{
  uint8_t b[8];

  if (fmt_is ("qed"))
    le64_store (b, v);
  else
    be64_store (b, v);
  if (pwrite (fd, b, 8, (off_t) off) != 8)
    die ("pwrite at %" PRIu64, off);
}

/* File offset of the L2 entry of guest cluster c.  Both headers keep the
 * L1 table's offset at byte 40; a QED table is 2 clusters here. */
static uint64_t
l2_entry_at (int fd, uint64_t c)
{
  uint64_t l1 = get64 (fd, 40);
  uint64_t entries = fmt_is ("qed") ? 2 * CS / 8 : CS / 8;
  uint64_t l2 = get64 (fd, l1 + (c / entries) * 8);

  if (fmt_is ("qcow2"))
    l2 &= QCOW2_OFFSET_MASK;
  return l2 + (c % entries) * 8;
}

/* The host offset of guest cluster c, from its L2 entry. */
static uint64_t
host_of (int fd, uint64_t c)
{
  uint64_t e = get64 (fd, l2_entry_at (fd, c));

  return fmt_is ("qcow2") ? e & QCOW2_OFFSET_MASK : e;
}

/* File offset of the 16-bit refcount of host cluster h. */
static uint64_t
refcount_at (int fd, uint64_t h)
{
  uint64_t rt = get64 (fd, 48), per_block = CS * 8 / 16;
  uint64_t rb = get64 (fd, rt + (h / per_block) * 8);

  if (rb == 0)
    die ("no refcount block for cluster %" PRIu64, h);
  return rb + (h % per_block) * 2;
}

static void
set_refcount (int fd, uint64_t h, uint16_t v)
{
  uint8_t b[2];

  be16_store (b, v);
  if (pwrite (fd, b, 2, (off_t) refcount_at (fd, h)) != 2)
    die ("pwrite");
}

static void
set_incompatible (int fd, uint64_t bits)
{
  put64 (fd, 72, get64 (fd, 72) | bits);
}

static int
open_rw (void)
{
  int fd = open (img_file, O_RDWR);

  if (fd == -1)
    die ("open %s", img_file);
  return fd;
}

/* The header says a check is needed: QED's NEED_CHECK feature, qcow2's
 * dirty bit. */
static void
set_dirty (int fd)
{
  if (fmt_is ("qed"))
    put64 (fd, 16, get64 (fd, 16) | 2);
  else
    set_incompatible (fd, 1);
}

/* ---- images ------------------------------------------------------------- */

static void
fresh_image (int lazy)
{
  const struct fmt_case c = {
    .format = test_format, .cs = CS, .qed_tables = 2, .lazy = lazy,
  };
  struct image *img;
  uint64_t i;

  create_fmt (img_file, SIZE, NULL, &c);
  img = open_fmt (img_file, 0, 0);
  /* One cluster per write, in order: cluster i lands after the L2 table,
   * at a known place. */
  for (i = 0; i < NCL; i++) {
    fill_pattern (model + i * CS, CS, i * CS, 7);
    CHECK (image_pwrite (img, model + i * CS, CS, i * CS, 0));
  }
  CHECK (image_close (img));
}

/* ---- comparing with qemu-img check -------------------------------------- */

struct counts {
  uint64_t corruptions, leaks, allocated, fragmented, compressed, end;
};

static void
qemu_counts (const char *file, struct counts *q)
{
  char cmd[4096], line[256];
  FILE *fp;

  memset (q, 0, sizeof *q);
  snprintf (cmd, sizeof cmd, "qemu-img check --output=json '%s' 2>/dev/null",
            file);
  fp = popen (cmd, "r");
  if (fp == NULL)
    die ("popen");
  while (fgets (line, sizeof line, fp)) {
    sscanf (line, " \"corruptions\": %" SCNu64, &q->corruptions);
    sscanf (line, " \"leaks\": %" SCNu64, &q->leaks);
    sscanf (line, " \"allocated-clusters\": %" SCNu64, &q->allocated);
    sscanf (line, " \"fragmented-clusters\": %" SCNu64, &q->fragmented);
    sscanf (line, " \"compressed-clusters\": %" SCNu64, &q->compressed);
    sscanf (line, " \"image-end-offset\": %" SCNu64, &q->end);
  }
  pclose (fp);
}

static void
print_msg (void *opaque, const char *msg)
{
  if (getenv ("VERBOSE"))
    printf ("  check: %s\n", msg);
}

/* qemu-img check on QED counts corruptions and leaks, nothing more. */
static bool
counts_agree (const struct image_check_result *r, const struct counts *q)
{
  if (r->corruptions != q->corruptions || r->leaks != q->leaks)
    return false;
  return fmt_is ("qed") ||
    (r->allocated_clusters == q->allocated &&
     r->fragmented_clusters == q->fragmented &&
     r->compressed_clusters == q->compressed && r->image_end_offset == q->end);
}

/* Our check (read-only, no repair) must count as qemu-img check does. */
static void
same_as_qemu (const char *file, const char *what)
{
  struct image *img = open_fmt (file, IMAGE_OPEN_READONLY |
                                IMAGE_OPEN_NO_REPAIR, 0);
  struct image_check_result r;
  struct counts q;

  CHECK (image_check (img, 0, &r, print_msg, NULL));
  CHECK (image_close (img));
  qemu_counts (file, &q);
  if (!counts_agree (&r, &q))
    die ("%s: check counts corruptions %" PRIu64 " leaks %" PRIu64
         " allocated %" PRIu64 " fragmented %" PRIu64 " compressed %" PRIu64
         " end %" PRIu64 "; qemu-img: %" PRIu64 " %" PRIu64 " %" PRIu64
         " %" PRIu64 " %" PRIu64 " %" PRIu64, what, r.corruptions, r.leaks,
         r.allocated_clusters, r.fragmented_clusters, r.compressed_clusters,
         r.image_end_offset, q.corruptions, q.leaks, q.allocated,
         q.fragmented, q.compressed, q.end);
}

/* Our check with flags (0: read-only, no repair) counts this. */
static void
check_counts (unsigned flags, uint64_t corruptions, uint64_t leaks,
              uint64_t corruptions_fixed, uint64_t leaks_fixed)
{
  struct image *img = open_fmt (img_file, IMAGE_OPEN_NO_REPAIR |
                                (flags ? 0 : IMAGE_OPEN_READONLY), 0);
  struct image_check_result r;

  CHECK (image_check (img, flags, &r, print_msg, NULL));
  CHECK (image_close (img));
  if (r.corruptions != corruptions || r.leaks != leaks ||
      r.corruptions_fixed != corruptions_fixed ||
      r.leaks_fixed != leaks_fixed)
    die ("check (flags %u): corruptions %" PRIu64 " leaks %" PRIu64
         " fixed %" PRIu64 "/%" PRIu64 ", expected %" PRIu64 " %" PRIu64
         " %" PRIu64 "/%" PRIu64, flags, r.corruptions, r.leaks,
         r.corruptions_fixed, r.leaks_fixed, corruptions, leaks,
         corruptions_fixed, leaks_fixed);
}

static void
verify_file (const char *what)
{
  struct image *img = open_fmt (img_file, IMAGE_OPEN_READONLY, 0);

  verify_image (img, model, SIZE, what);
  CHECK (image_close (img));
}

/* ---- the cases both formats have ---------------------------------------- */

/* QED: the automatic repair at open moves the last cluster into the
 * hole; qcow2: check -r leaks gives the cluster back. */
static void
repair_middle_leak (uint64_t before)
{
  struct image *img;
  int fd;

  if (fmt_is ("qcow2")) {
    check_counts (IMAGE_CHECK_REPAIR_LEAKS, 0, 0, 0, 1);
    return;
  }
  fd = open_rw ();
  set_dirty (fd);
  close (fd);
  img = open_fmt (img_file, 0, 0);              /* the automatic repair */
  verify_image (img, model, SIZE, "after the automatic repair");
  CHECK (image_close (img));
  if (file_size (img_file) != before - CS)
    die ("the repaired file is %" PRIu64 " bytes, expected %" PRIu64,
         file_size (img_file), before - CS);
  check_counts (0, 0, 0, 0, 0);
}

static void
middle_leak (void)
{
  uint64_t before;
  int fd;

  fresh_image (0);
  before = file_size (img_file);
  fd = open_rw ();
  put64 (fd, l2_entry_at (fd, 10), 0);          /* cluster 10's data leaks */
  close (fd);
  memset (model + 10 * CS, 0, CS);              /* no backing: zeros */
  same_as_qemu (img_file, "a leak in the middle");
  check_counts (0, 0, 1, 0, 0);
  repair_middle_leak (before);
  verify_file ("after repairing a middle leak");
  qemu_img_check_clean (img_file);
}

/* QED: past the end of the file, onto the L1 table, a second reference
 * to cluster 6's data (the scan meets entry 5 first and keeps it). */
static void
bad_qed_entries (int fd)
{
  put64 (fd, l2_entry_at (fd, 3), 1ULL << 40);
  put64 (fd, l2_entry_at (fd, 4), get64 (fd, 40));
  put64 (fd, l2_entry_at (fd, 5), host_of (fd, 6));
  memcpy (model + 5 * CS, model + 6 * CS, CS);
  memset (model + 6 * CS, 0, CS);
}

/* qcow2: past the end of the file, reserved bits, misaligned. */
static void
bad_qcow2_entries (int fd)
{
  put64 (fd, l2_entry_at (fd, 3), (1ULL << 40) | (1ULL << 63));
  put64 (fd, l2_entry_at (fd, 4), get64 (fd, l2_entry_at (fd, 4)) | 0x10);
  put64 (fd, l2_entry_at (fd, 5), get64 (fd, l2_entry_at (fd, 5)) + 512);
  memset (model + 5 * CS, 0, CS);
}

static void
expect_eio (struct image *img, uint64_t c, const char *what,
            const char *naming)
{
  uint8_t buf[CS];

  if (image_pread (img, buf, CS, c * CS) != -1 || image_errno () != EIO ||
      (naming && strstr (image_error (), naming) == NULL))
    die ("reading %s: expected EIO%s%s, got %s", what,
         naming ? " naming " : "", naming ? naming : "", image_error ());
}

static void
bad_entries (void)
{
  struct image *img;
  int fd;

  fresh_image (0);
  fd = open_rw ();
  if (fmt_is ("qed"))
    bad_qed_entries (fd);
  else
    bad_qcow2_entries (fd);
  close (fd);
  memset (model + 3 * CS, 0, 2 * CS);   /* bad entries read as holes */

  img = open_fmt (img_file, IMAGE_OPEN_READONLY, 0);
  expect_eio (img, 3, "a cluster past the end of the file", NULL);
  if (fmt_is ("qed"))
    expect_eio (img, 4, "a cluster over the L1 table", NULL);
  else {
    expect_eio (img, 4, "an entry with reserved bits", "reserved");
    expect_eio (img, 5, "a misaligned cluster", NULL);
  }
  CHECK (image_close (img));

  /* Three corruptions; the old data clusters of 3, 4 and 5 are leaked.
   * (qemu-img 7.2 counts qcow2's three its own way, as 5 corruptions and
   * 1 leak, so only QED is compared with it here.) */
  if (fmt_is ("qed"))
    same_as_qemu (img_file, "bad entries");
  check_counts (0, 3, 3, 0, 0);
  check_counts (IMAGE_CHECK_REPAIR_ERRORS | IMAGE_CHECK_REPAIR_LEAKS,
                0, 0, 3, 3);
  verify_file ("after repairing bad entries");
  qemu_img_check_clean (img_file);
}

static void
tail_leaks (void)
{
  uint64_t before, h;
  int fd;

  fresh_image (0);
  before = file_size (img_file);
  fd = open_rw ();
  if (ftruncate (fd, (off_t) (before + 5 * CS)) == -1)
    die ("ftruncate");
  if (fmt_is ("qcow2"))                 /* counted, never used */
    for (h = before / CS; h < before / CS + 5; h++)
      set_refcount (fd, h, 1);
  close (fd);
  same_as_qemu (img_file, "leaks at the end");
  check_counts (0, 0, 5, 0, 0);
  check_counts (IMAGE_CHECK_REPAIR_LEAKS, 0, 0, 0, 5);
  if (file_size (img_file) != before)
    die ("leaks at the end were not truncated: %" PRIu64 " bytes, expected %"
         PRIu64, file_size (img_file), before);
  verify_file ("after truncating leaks");
  qemu_img_check_clean (img_file);
}

/* ---- qcow2 only --------------------------------------------------------- */

static void
dirty_lagging (void)
{
  struct image *img;
  int fd;

  fresh_image (1);
  fd = open_rw ();
  set_refcount (fd, host_of (fd, 5) / CS, 0);   /* lagging behind */
  set_refcount (fd, host_of (fd, 6) / CS, 0);
  set_refcount (fd, host_of (fd, 7) / CS, 3);   /* leaked */
  set_incompatible (fd, 1);                     /* dirty */
  close (fd);
  same_as_qemu (img_file, "dirty, lagging refcounts");

  img = open_fmt (img_file, 0, 0);            /* the automatic repair */
  verify_image (img, model, SIZE, "after the automatic repair");
  CHECK (image_close (img));
  qemu_img_check_clean (img_file);
  if (run ("qemu-img info --output=json '%s' | grep -q '\"dirty-flag\": "
           "false'", img_file) != 0)
    die ("the repaired image is still dirty");
}

static void
copied_missing (void)
{
  struct image *img;
  uint8_t buf[100];
  int fd;

  fresh_image (0);
  fd = open_rw ();
  put64 (fd, l2_entry_at (fd, 20), get64 (fd, l2_entry_at (fd, 20)) &
         ~(1ULL << 63));
  close (fd);
  same_as_qemu (img_file, "COPIED missing");

  /* Writing copies the cluster and frees the old one: clean again. */
  img = open_fmt (img_file, 0, 0);
  fill_pattern (buf, sizeof buf, 20 * CS + 50, 9);
  CHECK (image_pwrite (img, buf, sizeof buf, 20 * CS + 50, 0));
  memcpy (model + 20 * CS + 50, buf, sizeof buf);
  verify_image (img, model, SIZE, "after writing a cluster without COPIED");
  CHECK (image_close (img));
  qemu_img_check_clean (img_file);

  fd = open_rw ();
  put64 (fd, l2_entry_at (fd, 21), get64 (fd, l2_entry_at (fd, 21)) &
         ~(1ULL << 63));
  close (fd);
  check_counts (IMAGE_CHECK_REPAIR_ERRORS, 0, 0, 1, 0);
  qemu_img_check_clean (img_file);
}

static void
corrupt_bit (void)
{
  struct image_open_opts o = { .flags = 0 };
  struct image *img;
  int fd;

  fresh_image (0);
  fd = open_rw ();
  set_incompatible (fd, 2);
  close (fd);
  if (image_open (img_file, &o) != NULL || image_errno () != EROFS ||
      strstr (image_error (), "corrupt") == NULL)
    die ("a read-write open of a corrupt image: expected EROFS naming the "
         "corrupt bit, got %s", image_error ());
  verify_file ("a corrupt image read-only");
  check_counts (IMAGE_CHECK_REPAIR_ERRORS | IMAGE_CHECK_REPAIR_LEAKS, 0, 0, 0, 0);
  img = open_fmt (img_file, 0, 0);            /* allowed again */
  CHECK (image_close (img));
  qemu_img_check_clean (img_file);
}

/* Counters on an image qemu made: compressed and fragmented clusters. */
static void
qemu_made_counters (void)
{
  const char *q = path ("q.qcow2");

  if (run ("qemu-io -f raw -c 'write -P 0x11 0 1M' -c 'write -P 0x22 3M 1M' "
           "'%s' >/dev/null 2>&1 && qemu-img convert -c -O qcow2 -f raw '%s' "
           "'%s' && qemu-io -f qcow2 -c 'write -P 0x33 64K 64K' "
           "-c 'write -P 0x44 8M 128K' -c 'write -P 0x55 4M 64K' '%s' "
           ">/dev/null", path ("r.raw"), path ("r.raw"), q, q) != 0)
    die ("making a compressed image with qemu");
  same_as_qemu (q, "qemu's compressed, fragmented image");
}

int
main (int argc, char *argv[])
{
  test_init (argv[0]);
  img_file = path ("d.img");
  middle_leak ();
  bad_entries ();
  tail_leaks ();
  if (fmt_is ("qcow2")) {
    if (run ("truncate -s 16M '%s'", path ("r.raw")) != 0)
      die ("truncate");
    dirty_lagging ();
    copied_missing ();
    corrupt_bit ();
    qemu_made_counters ();
  }
  return test_done ("repair");
}
