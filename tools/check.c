/* SPDX-License-Identifier: BSD-3-Clause */
/* cowbd-img check [-q] [-f FMT] [-r leaks|all] [--output=human|json] FILE
 *
 * Runs the engine's check (image_check) and reports as qemu-img check:
 * the same human sentences, the same JSON members (each present only when
 * non-zero, except check-errors, filename and format), the same exit
 * status:
 *
 *   0   no corruption, no leak         2   corruptions
 *   1   the check could not run        3   leaked clusters only
 *   63  the format has no check (raw)
 *
 * The image is opened with IMAGE_OPEN_NO_REPAIR, so that an image left
 * needing a check (QED NEED_CHECK) is reported as it is rather than
 * silently repaired by the open, and read-only unless -r asks for a
 * repair.  After a repair the image is checked once more, and what is
 * shown is that second check plus the counts fixed by the first, as
 * qemu-img does.  Problems the engine describes one by one go to stderr.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "img.h"

/* qemu-img check's exit status when the format has no check. */
#define EXIT_NO_CHECK 63

static void
report_problem (void *opaque, const char *msg)
{
  fflush (stdout);
  fprintf (stderr, "%s\n", msg);
}

static void
print_human (const struct image_check_result *r)
{
  if (!(r->corruptions || r->leaks || r->check_errors))
    printf ("No errors were found on the image.\n");
  if (r->corruptions)
    printf ("\n%" PRIu64 " errors were found on the image.\n"
            "Data may be corrupted, or further writes to the image "
            "may corrupt it.\n", r->corruptions);
  if (r->leaks)
    printf ("\n%" PRIu64 " leaked clusters were found on the image.\n"
            "This means waste of disk space, but no harm to data.\n",
            r->leaks);
  if (r->check_errors)
    printf ("\n%" PRIu64 " internal errors have occurred during the "
            "check.\n", r->check_errors);
  if (r->total_clusters && r->allocated_clusters)
    printf ("%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, %0.2f%% "
            "fragmented, %0.2f%% compressed clusters\n",
            r->allocated_clusters, r->total_clusters,
            (double) r->allocated_clusters * 100.0 / (double) r->total_clusters,
            (double) r->fragmented_clusters * 100.0 /
            (double) r->allocated_clusters,
            (double) r->compressed_clusters * 100.0 /
            (double) r->allocated_clusters);
  if (r->image_end_offset)
    printf ("Image end offset: %" PRIu64 "\n", r->image_end_offset);
}

/* A member present only when non-zero, as qemu-img prints them. */
static void
json_nonzero (struct json *j, const char *key, uint64_t v)
{
  if (v)
    json_uint (j, key, v);
}

static void
print_json (const struct image_check_result *r, const struct image_info *info)
{
  struct json *j = json_new (stdout);

  json_begin_object (j, NULL);
  json_nonzero (j, "image-end-offset", r->image_end_offset);
  json_nonzero (j, "compressed-clusters", r->compressed_clusters);
  json_nonzero (j, "total-clusters", r->total_clusters);
  json_nonzero (j, "corruptions", r->corruptions);
  json_nonzero (j, "corruptions-fixed", r->corruptions_fixed);
  json_uint (j, "check-errors", r->check_errors);
  json_nonzero (j, "leaks", r->leaks);
  json_nonzero (j, "leaks-fixed", r->leaks_fixed);
  json_nonzero (j, "allocated-clusters", r->allocated_clusters);
  json_string (j, "filename", info->filename);
  json_string (j, "format", info->format);
  json_nonzero (j, "fragmented-clusters", r->fragmented_clusters);
  json_end_object (j);
  json_free (j);
}

/* Runs the check (and the repair asked for).  Returns 0, or the exit
 * status when it could not run. */
static int
run_check (struct image *img, unsigned repair, bool quiet,
           enum output_format output, struct image_check_result *r)
{
  struct image_check_result fixed;

  if (image_check (img, repair, r, report_problem, NULL) == -1) {
    error_image ();
    return image_errno () == ENOTSUP ? EXIT_NO_CHECK : 1;
  }
  if (!(r->corruptions_fixed || r->leaks_fixed))
    return 0;
  if (output == OUTPUT_HUMAN && !quiet)
    printf ("The following inconsistencies were found and repaired:\n\n"
            "    %" PRIu64 " leaked clusters\n"
            "    %" PRIu64 " corruptions\n\n"
            "Double checking the fixed image now...\n",
            r->leaks_fixed, r->corruptions_fixed);
  fixed = *r;
  if (image_check (img, 0, r, report_problem, NULL) == -1) {
    error_image ();
    return 1;
  }
  r->leaks_fixed = fixed.leaks_fixed;
  r->corruptions_fixed = fixed.corruptions_fixed;
  return 0;
}

static int
parse_repair (const char *arg, unsigned *repair)
{
  if (strcmp (arg, "leaks") == 0)
    *repair = IMAGE_CHECK_REPAIR_LEAKS;
  else if (strcmp (arg, "all") == 0)
    *repair = IMAGE_CHECK_REPAIR_LEAKS | IMAGE_CHECK_REPAIR_ERRORS;
  else {
    error_msg ("-r must be 'leaks' or 'all', not '%s'", arg);
    return -1;
  }
  return 0;
}

int
cmd_check (int argc, char **argv)
{
  static const struct option long_opts[] = {
    { "help", no_argument, NULL, OPT_HELP },
    { "force-share", no_argument, NULL, 'U' },
    { "output", required_argument, NULL, OPT_OUTPUT },
    { NULL },
  };
  enum output_format output = OUTPUT_HUMAN;
  const char *format = NULL;
  unsigned repair = 0, share = 0;
  bool quiet = false;
  struct image *img;
  struct image_check_result r;
  struct image_info info;
  int c, status;

  while ((c = getopt_long (argc, argv, "qf:r:U", long_opts, NULL)) != -1) {
    switch (c) {
    case OPT_HELP: usage_command (stdout, "check"); return 0;
    case 'U': share = IMAGE_OPEN_FORCE_SHARE; break;
    case OPT_OUTPUT:
      if (parse_output (optarg, &output) == -1)
        return usage_hint ("check", 1);
      break;
    case 'q': quiet = true; break;
    case 'f': format = optarg; break;
    case 'r':
      if (parse_repair (optarg, &repair) == -1)
        return usage_hint ("check", 1);
      break;
    default: return usage_hint ("check", 1);
    }
  }
  if (argc - optind != 1)
    return usage_error ("check", 1, "expecting one image file name");
  if (repair && share)
    return usage_error ("check", 1, "-U (--force-share) cannot be used "
                        "with -r: a repair writes the image");

  img = open_image (argv[optind], format, IMAGE_OPEN_NO_REPAIR |
                    (repair ? 0 : IMAGE_OPEN_READONLY | share));
  if (img == NULL)
    return 1;
  status = run_check (img, repair, quiet, output, &r);
  if (status == 0) {
    image_get_info (img, &info);
    if (output == OUTPUT_JSON)
      print_json (&r, &info);
    else if (!quiet)
      print_human (&r);
    if (r.check_errors) {
      error_msg ("%s: check failed", info.filename);
      status = 1;
    }
    else
      status = r.corruptions ? 2 : r.leaks ? 3 : 0;
  }
  if (close_image (img) == -1 && status == 0)
    status = 1;
  return status;
}
