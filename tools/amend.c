/* SPDX-License-Identifier: BSD-3-Clause */
/* cowbd-img amend [-q] [-p] [-f FMT] -o OPTIONS FILE
 *
 * Changes what qemu-img amend changes, as it does (image_amend): in a
 * qcow2 image lazy_refcounts and compat (0.10 <-> 1.1, a downgrade only
 * where no version 3 feature is in use), and size (as resize, shrinking
 * allowed, as amend does); backing_file and backing_fmt only as they are
 * (qemu-img refuses to change them: rebase does).  Creation-only options
 * (cluster_size, and the format options the engine does not mark as
 * amendable: refcount_bits...) are refused, as qemu-img refuses them,
 * before the image is opened.  Prints nothing on success.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "img.h"

/* Creation-only options: the name of one that is set, or NULL (an
 * option set to 0 or off asks for nothing). */
static const char *
creation_only (const struct image_create_opts *o)
{
  const struct image_option *opt;
  const struct image_option_value *v;
  unsigned i;

  if (o->cluster_size)
    return "cluster_size";
  for (i = 0; (opt = image_option_at (i)) != NULL; i++) {
    v = image_option_find (o, opt->name);
    if (!opt->amend && v && (v->string || v->number))
      return opt->name;
  }
  if (o->prealloc != IMAGE_PREALLOC_OFF)
    return "preallocation";
  return NULL;
}

int
cmd_amend (int argc, char **argv)
{
  static const struct option long_opts[] = {
    { "help", no_argument, NULL, OPT_HELP },
    { NULL },
  };
  struct image_create_opts opts = { .format = NULL };
  const char *format = NULL, *bad;
  bool have_opts = false;
  struct image *img;
  int c, r;

  while ((c = getopt_long (argc, argv, "qpf:o:", long_opts, NULL)) != -1) {
    switch (c) {
    case OPT_HELP: usage_command (stdout, "amend"); return 0;
    case 'q': case 'p': break;  /* nothing printed; nothing long */
    case 'f': format = optarg; break;
    case 'o':
      if (parse_create_options (optarg, &opts) == -1)
        return usage_hint ("amend", 1);
      have_opts = true;
      break;
    default: return usage_hint ("amend", 1);
    }
  }
  if (!have_opts)
    return usage_error ("amend", 1, "Must specify options (-o)");
  if (argc - optind != 1)
    return usage_error ("amend", 1, "expecting one image file name");
  if ((bad = creation_only (&opts)) != NULL) {
    error_msg ("%s can only be set when the image is created", bad);
    return 1;
  }
  img = open_image (argv[optind], format, 0);
  if (img == NULL)
    return 1;
  r = image_amend (img, &opts);
  if (r == -1)
    error_image ();
  if (close_image (img) == -1)
    r = -1;
  return r == 0 ? 0 : 1;
}
