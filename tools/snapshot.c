/* SPDX-License-Identifier: BSD-3-Clause */
/* cowbd-img snapshot [-f FMT] [-U] [-q] (-l | -c NAME | -a NAME | -d NAME)
 *   FILE
 *
 * Lists a qcow2 image's internal snapshots as qemu-img snapshot -l does
 * (and gives info its "Snapshot list" and "snapshots" member); creates,
 * applies and deletes them as qemu-img snapshot -c, -a, -d do
 * (image_snapshot_create and the others), with qemu-img's messages and
 * exit code 1 on failure.  -a takes an id or a name, -d a name only, as
 * qemu-img takes them.
 *
 * The table layout is qemu's bdrv_snapshot_dump: ID, TAG, VM SIZE, DATE
 * (local time), VM CLOCK (hh:mm:ss.mmm), ICOUNT (empty when the
 * snapshot records none).
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
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

/* -c, -a or -d on an image opened read-write. */
static int
change (char op, const char *name, const char *file, const char *format)
{
  static const char *const verbs[] = { "create", "apply", "delete" };
  const char *verb = verbs[op == 'c' ? 0 : op == 'a' ? 1 : 2];
  struct image *img = open_image (file, format, IMAGE_OPEN_NO_BACKING);
  int r;

  if (img == NULL)
    return 1;
  if (op == 'c')
    r = image_snapshot_create (img, name);
  else if (op == 'a')
    r = image_snapshot_apply (img, name);
  else
    r = image_snapshot_delete (img, name);
  if (r == -1 && image_errno () == ENOENT && op == 'a')
    error_msg ("Could not apply snapshot '%s': Failed to load snapshot: %s",
               name, strerror (ENOENT));
  else if (r == -1 && image_errno () == ENOENT)
    error_msg ("Could not delete snapshot '%s': snapshot not found", name);
  else if (r == -1)
    error_msg ("Could not %s snapshot '%s': %s", verb, name, image_error ());
  if (close_image (img) == -1)
    r = -1;
  return r == 0 ? 0 : 1;
}

static int
list (const char *file, const char *format, unsigned share, bool print)
{
  struct image *img = open_image (file, format, IMAGE_OPEN_READONLY |
                                  IMAGE_OPEN_NO_BACKING | share);

  if (img == NULL)
    return 1;
  if (print && snapshot_count (img))
    snapshot_print_list (img);
  image_close (img);
  return 0;
}

int
cmd_snapshot (int argc, char **argv)
{
  static const struct option long_opts[] = {
    { "help", no_argument, NULL, OPT_HELP },
    { "force-share", no_argument, NULL, 'U' },
    { NULL },
  };
  const char *format = NULL, *name = NULL;
  unsigned share = 0;
  char op = 0;
  int c;

  while ((c = getopt_long (argc, argv, "f:Ulqa:c:d:", long_opts, NULL))
         != -1) {
    switch (c) {
    case OPT_HELP: usage_command (stdout, "snapshot"); return 0;
    case 'f': format = optarg; break;
    case 'U': share = IMAGE_OPEN_FORCE_SHARE; break;
    case 'q': break;
    case 'l': case 'a': case 'c': case 'd':
      if (op)
        return usage_error ("snapshot", 1, "Cannot mix '-l', '-a', '-c', "
                            "'-d'");
      op = (char) c;
      name = optarg;
      break;
    default: return usage_hint ("snapshot", 1);
    }
  }
  if (argc - optind != 1)
    return usage_error ("snapshot", 1, "expecting one image file name");
  if (op == 0 || op == 'l')      /* none: opened, nothing printed (qemu) */
    return list (argv[optind], format, share, op == 'l');
  if (share)
    return usage_error ("snapshot", 1, "-U applies to -l only");
  return change (op, name, argv[optind], format);
}
