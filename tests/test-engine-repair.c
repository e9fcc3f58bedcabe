/* SPDX-License-Identifier: BSD-3-Clause */
/* The QED check and repair on damaged images, made by patching entries
 * of an image written through the engine:
 *
 *  - a leak in the middle of the file (an L2 entry cleared, as a crash in
 *    the middle of a writeback can leave it): check counts it; a read-write
 *    open of the image marked NEED_CHECK repairs it by moving the last
 *    data cluster into the hole, so the file shrinks by one cluster and
 *    every other cluster still reads its data;
 *  - an entry pointing past the end of the file, one pointing onto the L1
 *    table and a second reference to a cluster: check reports three
 *    corruptions (and reads of the first two fail with EIO rather than
 *    read garbage); REPAIR_ERRORS drops them;
 *  - leaks at the end of the file: REPAIR_LEAKS truncates them.
 *
 * After each repair, qemu-img check must be clean.
 */
#include <config.h>

#include <fcntl.h>

#include "engine-test.h"
#include "byte-swapping.h"

#define CS ((uint64_t) 4096)
#define NCL 64                  /* clusters written */
#define SIZE (NCL * CS)

static uint8_t model[SIZE];

/* File offsets of the L1 table and of the L2 table for guest offset 0. */
static uint64_t
l2_table_offset (int fd)
{
  uint8_t b[8];

  if (pread (fd, b, 8, CS * 1) != 8)    /* L1 right after the header */
    die ("reading the L1 table");
  return le64_load (b);
}

static uint64_t
get_entry (int fd, uint64_t l2, uint64_t index)
{
  uint8_t b[8];

  if (pread (fd, b, 8, l2 + index * 8) != 8)
    die ("reading an L2 entry");
  return le64_load (b);
}

static void
set_entry (int fd, uint64_t l2, uint64_t index, uint64_t value)
{
  uint8_t b[8];

  le64_store (b, value);
  if (pwrite (fd, b, 8, l2 + index * 8) != 8)
    die ("writing an L2 entry");
}

static void
set_need_check (int fd)
{
  uint8_t b[8];

  if (pread (fd, b, 8, 16) != 8)
    die ("reading features");
  le64_store (b, le64_load (b) | 2);
  if (pwrite (fd, b, 8, 16) != 8)
    die ("writing features");
}

static uint64_t
file_size (const char *file)
{
  struct stat st;

  if (stat (file, &st) == -1)
    die ("stat %s", file);
  return (uint64_t) st.st_size;
}

static void
fresh_image (void)
{
  struct image *img;
  uint64_t i;

  create_image (path ("d.qed"), "qed", SIZE, NULL, CS, 2);
  img = open_image (path ("d.qed"), 0, 0);
  /* One cluster per write, in order: cluster i lands at a known place. */
  for (i = 0; i < NCL; i++) {
    fill_pattern (model + i * CS, CS, i * CS, 7);
    CHECK (image_pwrite (img, model + i * CS, CS, i * CS, 0));
  }
  CHECK (image_close (img));
}

static void
check_counts (unsigned flags, uint64_t corruptions, uint64_t leaks,
              uint64_t corruptions_fixed, uint64_t leaks_fixed)
{
  struct image *img = open_image (path ("d.qed"),
                                  IMAGE_OPEN_NO_REPAIR |
                                  (flags ? 0 : IMAGE_OPEN_READONLY), 0);
  struct image_check_result r;

  CHECK (image_check (img, flags, &r, NULL, NULL));
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
middle_leak (void)
{
  uint64_t before, l2;
  struct image *img;
  int fd;

  fresh_image ();
  before = file_size (path ("d.qed"));
  fd = open (path ("d.qed"), O_RDWR);
  l2 = l2_table_offset (fd);
  set_entry (fd, l2, 10, 0);          /* cluster 10's data: now leaked */
  set_need_check (fd);
  close (fd);
  memset (model + 10 * CS, 0, CS);    /* no backing file: reads zeros */

  check_counts (0, 0, 1, 0, 0);
  img = open_image (path ("d.qed"), 0, 0);  /* the automatic repair */
  verify_image (img, model, SIZE, "after repairing a middle leak");
  CHECK (image_close (img));
  if (file_size (path ("d.qed")) != before - CS)
    die ("the repaired file is %" PRIu64 " bytes, expected %" PRIu64,
         file_size (path ("d.qed")), (uint64_t) (before - CS));
  check_counts (0, 0, 0, 0, 0);
  qemu_img_check_clean (path ("d.qed"));
}

static void
bad_entries (void)
{
  struct image *img;
  uint8_t buf[CS];
  uint64_t l2;
  int fd;

  fresh_image ();
  fd = open (path ("d.qed"), O_RDWR);
  l2 = l2_table_offset (fd);
  set_entry (fd, l2, 3, 1ULL << 40);  /* past the end of the file */
  set_entry (fd, l2, 4, CS);          /* onto the L1 table */
  set_entry (fd, l2, 5, get_entry (fd, l2, 6));  /* a second reference */
  close (fd);

  img = open_image (path ("d.qed"), IMAGE_OPEN_READONLY, 0);
  if (image_pread (img, buf, CS, 3 * CS) != -1 || image_errno () != EIO)
    die ("reading a cluster past the end of the file: expected EIO");
  if (image_pread (img, buf, CS, 4 * CS) != -1 || image_errno () != EIO)
    die ("reading a cluster over the L1 table: expected EIO");
  CHECK (image_close (img));

  /* Three corruptions; the old data clusters of 3, 4 and 5 are leaked. */
  check_counts (0, 3, 3, 0, 0);
  check_counts (IMAGE_CHECK_REPAIR_ERRORS | IMAGE_CHECK_REPAIR_LEAKS,
                0, 0, 3, 3);
  /* The bad entries read as holes now.  Of the two references to cluster
   * 6's data, the scan met entry 5 first and kept it. */
  memset (model + 3 * CS, 0, 2 * CS);
  memcpy (model + 5 * CS, model + 6 * CS, CS);
  memset (model + 6 * CS, 0, CS);
  img = open_image (path ("d.qed"), 0, 0);
  verify_image (img, model, SIZE, "after repairing bad entries");
  CHECK (image_close (img));
  qemu_img_check_clean (path ("d.qed"));
}

static void
tail_leaks (void)
{
  uint64_t before;

  fresh_image ();
  before = file_size (path ("d.qed"));
  if (truncate (path ("d.qed"), (off_t) (before + 5 * CS)) == -1)
    die ("truncate");
  check_counts (0, 0, 5, 0, 0);
  check_counts (IMAGE_CHECK_REPAIR_LEAKS, 0, 0, 0, 5);
  if (file_size (path ("d.qed")) != before)
    die ("leaks at the end were not truncated");
  qemu_img_check_clean (path ("d.qed"));
}

int
main (int argc, char *argv[])
{
  test_init (argv[0]);
  middle_leak ();
  bad_entries ();
  tail_leaks ();
  test_cleanup ();
  printf ("engine repair: ok\n");
  return 0;
}
