/* SPDX-License-Identifier: BSD-3-Clause */
/* cowbd-img resize [-q] [-f FMT] [--shrink] [--preallocation=MODE]
 *                  FILE [+|-]SIZE
 *
 * As qemu-img resize: SIZE is absolute, or relative with + or -; the
 * size is taken from the end of the command line before the options are
 * parsed, so that "-1G" is not read as an option.  Shrinking needs
 * --shrink.  The engine does the work (image_resize: the crash ordering
 * is in formats/qcow2-resize.c and qed-resize.c).
 */
#include <config.h>

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "img.h"

enum { OPT_SHRINK = 0x200, OPT_PREALLOC };

static int
parse_prealloc (const char *arg, enum image_prealloc *p)
{
  static const char *const names[] = { "off", "metadata", "falloc", "full" };
  size_t i;

  for (i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp (arg, names[i]) == 0) {
      *p = (enum image_prealloc) i;
      return 0;
    }
  usage_error ("resize", 1, "--preallocation must be off, metadata, "
               "falloc or full, not '%s'", arg);
  return -1;
}

/* The new size from "[+|-]SIZE" and the current size. */
static int
new_size (const char *arg, uint64_t cur, uint64_t *size)
{
  int sign = (arg[0] == '+') - (arg[0] == '-');
  uint64_t n;

  if (parse_size ("size", arg + (sign != 0), &n) == -1)
    return -1;
  if (sign < 0 && n >= cur) {
    error_msg ("New image size must be positive");
    return -1;
  }
  if (sign > 0 && n > (uint64_t) INT64_MAX - cur) {
    error_msg ("size '%s' is too large", arg);
    return -1;
  }
  *size = sign > 0 ? cur + n : sign < 0 ? cur - n : n;
  if (*size == 0) {
    error_msg ("New image size must be positive");
    return -1;
  }
  return 0;
}

static int
resize_image (struct image *img, const char *arg, bool shrink,
              enum image_prealloc prealloc)
{
  uint64_t size;

  if (new_size (arg, image_size (img), &size) == -1)
    return -1;
  if (size < image_size (img) && !shrink) {
    error_msg ("Use the --shrink option to perform a shrink operation.");
    error_msg ("warning: Shrinking an image will delete all data beyond "
               "the shrunken image's end. Before performing such an "
               "operation, make sure there is no important data there.");
    return -1;
  }
  if (image_resize (img, size, prealloc,
                    shrink ? IMAGE_RESIZE_SHRINK : 0) == -1) {
    error_image ();
    return -1;
  }
  return 0;
}

int
cmd_resize (int argc, char **argv)
{
  static const struct option long_opts[] = {
    { "help", no_argument, NULL, OPT_HELP },
    { "shrink", no_argument, NULL, OPT_SHRINK },
    { "preallocation", required_argument, NULL, OPT_PREALLOC },
    { NULL },
  };
  enum image_prealloc prealloc = IMAGE_PREALLOC_OFF;
  const char *format = NULL, *size_arg;
  bool quiet = false, shrink = false;
  struct image *img;
  int c, r;

  if (argc == 2 && strcmp (argv[1], "--help") == 0) {
    usage_command (stdout, "resize");
    return 0;
  }
  if (argc < 3)
    return usage_error ("resize", 1, "expecting an image file name and a "
                        "size");
  size_arg = argv[--argc];
  while ((c = getopt_long (argc, argv, "qf:", long_opts, NULL)) != -1) {
    switch (c) {
    case OPT_HELP: usage_command (stdout, "resize"); return 0;
    case 'q': quiet = true; break;
    case 'f': format = optarg; break;
    case OPT_SHRINK: shrink = true; break;
    case OPT_PREALLOC:
      if (parse_prealloc (optarg, &prealloc) == -1)
        return 1;
      break;
    default: return usage_hint ("resize", 1);
    }
  }
  if (argc - optind != 1)
    return usage_error ("resize", 1, "expecting an image file name and a "
                        "size");
  img = open_image (argv[optind], format, 0);
  if (img == NULL)
    return 1;
  r = resize_image (img, size_arg, shrink, prealloc);
  if (close_image (img) == -1)
    r = -1;
  if (r == 0 && !quiet)
    printf ("Image resized.\n");
  return r == 0 ? 0 : 1;
}
