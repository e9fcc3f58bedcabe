/* SPDX-License-Identifier: BSD-3-Clause */
/* The qcow2 check and repair on damaged images, made by patching an image
 * written through the engine, each time compared with what qemu-img check
 * reports on the same file (corruptions, leaks, allocated and fragmented
 * clusters, image end offset):
 *
 *  - dirty bit with refcounts lagging behind (lazy refcounts after a
 *    crash) and a leaked count: a read-write open rebuilds them;
 *  - a leak in the middle of the file (an L2 entry cleared): check -r
 *    leaks gives it back (refcount 0, hole punched);
 *  - entries with reserved bits, pointing past the end of the file, or
 *    misaligned: reads fail with EIO, check reports corruptions and
 *    REPAIR_ERRORS drops them;
 *  - COPIED missing on a cluster whose refcount is 1: a write copies the
 *    cluster (as for a shared one) and frees the old, which leaves a
 *    clean image; the check reports and repairs the flag too;
 *  - refcounted clusters past the last used one: leaks, truncated away;
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

static uint8_t model[SIZE];
static const char *img_file;

/* ---- reading and patching the file -------------------------------------- */

static uint64_t
get64 (int fd, uint64_t off)
{
  uint8_t b[8];

  if (pread (fd, b, 8, (off_t) off) != 8)
    die ("pread at %" PRIu64, off);
  return be64_load (b);
}

static void
put64 (int fd, uint64_t off, uint64_t v)
{
  uint8_t b[8];

  be64_store (b, v);
  if (pwrite (fd, b, 8, (off_t) off) != 8)
    die ("pwrite at %" PRIu64, off);
}

/* File offset of the L2 entry of guest cluster c. */
static uint64_t
l2_entry_at (int fd, uint64_t c)
{
  uint64_t l1 = get64 (fd, 40), entries = CS / 8;
  uint64_t l2 = get64 (fd, l1 + (c / entries) * 8) & 0x00fffffffffffe00ULL;

  return l2 + (c % entries) * 8;
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

static uint64_t
file_size (const char *file)
{
  struct stat st;

  if (stat (file, &st) == -1)
    die ("stat %s", file);
  return (uint64_t) st.st_size;
}

static int
open_rw (void)
{
  int fd = open (img_file, O_RDWR);

  if (fd == -1)
    die ("open %s", img_file);
  return fd;
}

/* ---- images ------------------------------------------------------------- */

static void
fresh_image (int lazy)
{
  struct image *img;
  uint64_t i;

  create_qcow2 (img_file, SIZE, NULL, CS, lazy, NULL, 0);
  img = open_image (img_file, 0, 0);
  /* One cluster per write, in order: cluster i lands after the L2 table,
   * at a known place. */
  for (i = 0; i < NCL; i++) {
    fill_pattern (model + i * CS, CS, i * CS, 7);
    CHECK (image_pwrite (img, model + i * CS, CS, i * CS, 0));
  }
  CHECK (image_close (img));
}

/* The host offset of guest cluster c, from its L2 entry. */
static uint64_t
host_of (int fd, uint64_t c)
{
  return get64 (fd, l2_entry_at (fd, c)) & 0x00fffffffffffe00ULL;
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

/* Our check (read-only, no repair) must count as qemu-img check does. */
static void
same_as_qemu (const char *file, const char *what)
{
  struct image *img = open_image (file, IMAGE_OPEN_READONLY |
                                  IMAGE_OPEN_NO_REPAIR, 0);
  struct image_check_result r;
  struct counts q;

  CHECK (image_check (img, 0, &r, print_msg, NULL));
  CHECK (image_close (img));
  qemu_counts (file, &q);
  if (r.corruptions != q.corruptions || r.leaks != q.leaks ||
      r.allocated_clusters != q.allocated ||
      r.fragmented_clusters != q.fragmented ||
      r.compressed_clusters != q.compressed || r.image_end_offset != q.end)
    die ("%s: check counts corruptions %" PRIu64 " leaks %" PRIu64
         " allocated %" PRIu64 " fragmented %" PRIu64 " compressed %" PRIu64
         " end %" PRIu64 "; qemu-img: %" PRIu64 " %" PRIu64 " %" PRIu64
         " %" PRIu64 " %" PRIu64 " %" PRIu64, what, r.corruptions, r.leaks,
         r.allocated_clusters, r.fragmented_clusters, r.compressed_clusters,
         r.image_end_offset, q.corruptions, q.leaks, q.allocated,
         q.fragmented, q.compressed, q.end);
}

static void
repair (unsigned flags, uint64_t corruptions_fixed, uint64_t leaks_fixed)
{
  struct image *img = open_image (img_file, IMAGE_OPEN_NO_REPAIR, 0);
  struct image_check_result r;

  CHECK (image_check (img, flags, &r, print_msg, NULL));
  CHECK (image_close (img));
  if (r.corruptions || r.leaks || r.corruptions_fixed != corruptions_fixed ||
      r.leaks_fixed != leaks_fixed)
    die ("repair (flags %u): left %" PRIu64 "/%" PRIu64 ", fixed %" PRIu64
         "/%" PRIu64 ", expected fixed %" PRIu64 "/%" PRIu64, flags,
         r.corruptions, r.leaks, r.corruptions_fixed, r.leaks_fixed,
         corruptions_fixed, leaks_fixed);
}

static void
verify_file (const char *what)
{
  struct image *img = open_image (img_file, IMAGE_OPEN_READONLY, 0);

  verify_image (img, model, SIZE, what);
  CHECK (image_close (img));
}

/* ---- the cases ---------------------------------------------------------- */

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

  img = open_image (img_file, 0, 0);            /* the automatic repair */
  verify_image (img, model, SIZE, "after the automatic repair");
  CHECK (image_close (img));
  qemu_img_check_clean (img_file);
  if (run ("qemu-img info --output=json '%s' | grep -q '\"dirty-flag\": "
           "false'", img_file) != 0)
    die ("the repaired image is still dirty");
}

static void
middle_leak (void)
{
  int fd;

  fresh_image (0);
  fd = open_rw ();
  put64 (fd, l2_entry_at (fd, 10), 0);          /* cluster 10's data leaks */
  close (fd);
  memset (model + 10 * CS, 0, CS);
  same_as_qemu (img_file, "a leak in the middle");
  repair (IMAGE_CHECK_REPAIR_LEAKS, 0, 1);
  verify_file ("after repairing a middle leak");
  qemu_img_check_clean (img_file);
}

static void
bad_entries (void)
{
  struct image *img;
  uint8_t buf[CS];
  int fd;

  fresh_image (0);
  fd = open_rw ();
  put64 (fd, l2_entry_at (fd, 3), (1ULL << 40) | (1ULL << 63)); /* past EOF */
  put64 (fd, l2_entry_at (fd, 4), get64 (fd, l2_entry_at (fd, 4)) | 0x10);
  put64 (fd, l2_entry_at (fd, 5), get64 (fd, l2_entry_at (fd, 5)) + 512);
  close (fd);

  img = open_image (img_file, IMAGE_OPEN_READONLY, 0);
  if (image_pread (img, buf, CS, 3 * CS) != -1 || image_errno () != EIO)
    die ("reading a cluster past the end of the file: expected EIO");
  if (image_pread (img, buf, CS, 4 * CS) != -1 || image_errno () != EIO ||
      strstr (image_error (), "reserved") == NULL)
    die ("reading an entry with reserved bits: expected EIO naming them, "
         "got %s", image_error ());
  if (image_pread (img, buf, CS, 5 * CS) != -1 || image_errno () != EIO)
    die ("reading a misaligned cluster: expected EIO");
  CHECK (image_close (img));

  /* Three corruptions, the old data clusters of 3, 4 and 5 leaked. */
  repair (IMAGE_CHECK_REPAIR_ERRORS | IMAGE_CHECK_REPAIR_LEAKS, 3, 3);
  memset (model + 3 * CS, 0, 3 * CS);
  verify_file ("after repairing bad entries");
  qemu_img_check_clean (img_file);
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
  img = open_image (img_file, 0, 0);
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
  repair (IMAGE_CHECK_REPAIR_ERRORS, 1, 0);
  qemu_img_check_clean (img_file);
}

static void
tail_leaks (void)
{
  uint64_t before, last;
  int fd;

  fresh_image (0);
  before = file_size (img_file);
  fd = open_rw ();
  last = before / CS;
  if (ftruncate (fd, (off_t) (before + 5 * CS)) == -1)
    die ("ftruncate");
  for (uint64_t h = last; h < last + 5; h++)
    set_refcount (fd, h, 1);
  close (fd);
  same_as_qemu (img_file, "leaks at the end");
  repair (IMAGE_CHECK_REPAIR_LEAKS, 0, 5);
  if (file_size (img_file) != before)
    die ("leaks at the end were not truncated: %" PRIu64 " bytes, expected %"
         PRIu64, file_size (img_file), before);
  verify_file ("after truncating leaks");
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
  repair (IMAGE_CHECK_REPAIR_ERRORS | IMAGE_CHECK_REPAIR_LEAKS, 0, 0);
  img = open_image (img_file, 0, 0);            /* allowed again */
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
  img_file = path ("d.qcow2");
  if (run ("truncate -s 16M '%s'", path ("r.raw")) != 0)
    die ("truncate");
  dirty_lagging ();
  middle_leak ();
  bad_entries ();
  copied_missing ();
  tail_leaks ();
  corrupt_bit ();
  qemu_made_counters ();
  test_cleanup ();
  printf ("qcow2 repair: ok\n");
  return 0;
}
