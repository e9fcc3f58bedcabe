/* SPDX-License-Identifier: BSD-3-Clause */
/* cowbd-img snapshot -l [-f FMT] [-U] FILE
 *
 * Lists a qcow2 image's internal snapshots as qemu-img snapshot -l does
 * (and gives info its "Snapshot list" and "snapshots" member).  Creating,
 * applying and deleting snapshots (-c, -a, -d) are not done yet: they
 * are refused with a message naming qemu-img, which can.
 *
 * The table layout is qemu's bdrv_snapshot_dump: ID, TAG, VM SIZE, DATE
 * (local time), VM CLOCK (hh:mm:ss.mmm), ICOUNT (empty when the
 * snapshot records none).
 */
#include <config.h>

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "img.h"
#include "size.h"

static int
print_row (void *opaque, const struct image_snapshot *sn)
{
  time_t t = (time_t) sn->date_sec;
  uint64_t secs = sn->vm_clock_nsec / 1000000000;
  char date[32] = "", clock[64], size[32], icount[32] = "";
  struct tm tm;

  (void) opaque;
  if (localtime_r (&t, &tm))
    strftime (date, sizeof date, "%Y-%m-%d %H:%M:%S", &tm);
  snprintf (clock, sizeof clock, "%02d:%02d:%02d.%03d",
            (int) (secs / 3600), (int) ((secs / 60) % 60),
            (int) (secs % 60),
            (int) ((sn->vm_clock_nsec / 1000000) % 1000));
  if (sn->icount != UINT64_MAX)
    snprintf (icount, sizeof icount, "%" PRId64, (int64_t) sn->icount);
  printf ("%-9s %-16s %8s%20s%13s%11s\n", sn->id, sn->name,
          size_format (sn->vm_state_size, size, sizeof size), date, clock,
          icount);
  return 0;
}

static int
count (void *opaque, const struct image_snapshot *sn)
{
  (void) sn;
  ++*(unsigned *) opaque;
  return 0;
}

unsigned
snapshot_count (struct image *img)
{
  unsigned n = 0;

  image_snapshots (img, count, &n);
  return n;
}

void
snapshot_print_list (struct image *img)
{
  printf ("Snapshot list:\n");
  printf ("%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE",
          "VM CLOCK", "ICOUNT");
  image_snapshots (img, print_row, NULL);
}

static int
json_row (void *opaque, const struct image_snapshot *sn)
{
  struct json *j = opaque;

  json_begin_object (j, NULL);
  if (sn->icount != UINT64_MAX)
    json_uint (j, "icount", sn->icount);
  json_uint (j, "vm-clock-nsec", sn->vm_clock_nsec % 1000000000);
  json_string (j, "name", sn->name);
  json_uint (j, "date-sec", sn->date_sec);
  json_uint (j, "date-nsec", sn->date_nsec);
  json_uint (j, "vm-clock-sec", sn->vm_clock_nsec / 1000000000);
  json_string (j, "id", sn->id);
  json_uint (j, "vm-state-size", sn->vm_state_size);
  json_end_object (j);
  return 0;
}

void
snapshot_json_list (struct json *j, struct image *img)
{
  json_begin_list (j, "snapshots");
  image_snapshots (img, json_row, j);
  json_end_list (j);
}

int
cmd_snapshot (int argc, char **argv)
{
  static const struct option long_opts[] = {
    { "help", no_argument, NULL, OPT_HELP },
    { "force-share", no_argument, NULL, 'U' },
    { NULL },
  };
  const char *format = NULL;
  unsigned share = 0;
  bool list = false;
  struct image *img;
  int c;

  while ((c = getopt_long (argc, argv, "f:Ulqa:c:d:", long_opts, NULL))
         != -1) {
    switch (c) {
    case OPT_HELP: usage_command (stdout, "snapshot"); return 0;
    case 'f': format = optarg; break;
    case 'U': share = IMAGE_OPEN_FORCE_SHARE; break;
    case 'l': list = true; break;
    case 'q': break;
    case 'a': case 'c': case 'd':
      error_msg ("snapshot -%c is not supported yet: only -l is (qemu-img "
                 "snapshot -%c does it)", c, c);
      return 1;
    default: return usage_hint ("snapshot", 1);
    }
  }
  if (!list)
    return usage_error ("snapshot", 1, "expecting -l");
  if (argc - optind != 1)
    return usage_error ("snapshot", 1, "expecting one image file name");
  img = open_image (argv[optind], format, IMAGE_OPEN_READONLY |
                    IMAGE_OPEN_NO_BACKING | share);
  if (img == NULL)
    return 1;
  if (snapshot_count (img))
    snapshot_print_list (img);
  image_close (img);
  return 0;
}
