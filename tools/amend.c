/* SPDX-License-Identifier: BSD-3-Clause */
/* cowbd-img amend [-q] [-p] [-f FMT] -o OPTIONS FILE
 *
 * Changes what qemu-img amend changes in a qcow2 image, as it does:
 * lazy_refcounts (image_set_lazy_refcounts), compat (image_set_compat:
 * 0.10 <-> 1.1, a downgrade only where no version 3 feature is in use)
 * and size (as resize, shrinking allowed, as amend does); backing_file
 * and backing_fmt only as they are (qemu-img refuses to change them:
 * rebase does).  Creation-only options (cluster_size, refcount_bits...) are
 * refused, as qemu-img refuses them, before the image is opened.  Prints
 * nothing on success.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "img.h"

/* Creation-only options: the name of one that is set, or NULL. */
static const char *
creation_only (const struct image_create_opts *o)
{
  if (o->cluster_size)
    return "cluster_size";
  if (o->table_size)
    return "table_size";
  if (o->refcount_bits)
    return "refcount_bits";
  if (o->compression_type)
    return "compression_type";
  if (o->prealloc != IMAGE_PREALLOC_OFF)
    return "preallocation";
  return NULL;
}

/* As qemu-img: the backing file and format may only be named as they
 * are (rebase changes them). */
static int
amend_backing (const struct image_create_opts *o,
               const struct image_info *info)
{
  const char *file = info->backing_filename, *fmt = info->backing_format;

  if ((o->backing_file && (file == NULL || strcmp (o->backing_file, file))) ||
      (o->backing_format && (fmt == NULL || strcmp (o->backing_format, fmt))))
  {
    image_set_error (EINVAL, "%s: cannot amend the backing file "
                     "(cowbd-img rebase can change it)", info->filename);
    return -1;
  }
  return 0;
}

static bool
is_v2 (const char *compat)
{
  return strcmp (compat, "0.10") == 0 || strcmp (compat, "v2") == 0;
}

static int
amend (struct image *img, const struct image_create_opts *o)
{
  struct image_info info;

  image_get_info (img, &info);
  if (strcmp (info.format, "qcow2") != 0) {
    error_msg ("%s: format %s does not support option amendment",
               info.filename, info.format);
    return -1;
  }
  if (o->compat && is_v2 (o->compat) && o->lazy_refcounts == 1) {
    error_msg ("Lazy refcounts only supported with compatibility level 1.1 "
               "and above (use compat=1.1 or greater)");
    return -1;
  }
  /* First, and checked whole before it writes: a refused downgrade
   * leaves the file as it was. */
  if (o->compat && image_set_compat (img, o->compat) == -1) {
    error_image ();
    return -1;
  }
  if ((o->size && o->size != image_size (img) &&
       image_resize (img, o->size, IMAGE_PREALLOC_OFF,
                     IMAGE_RESIZE_SHRINK) == -1) ||
      amend_backing (o, &info) == -1 ||
      (o->lazy_refcounts >= 0 && !(o->compat && is_v2 (o->compat)) &&
       image_set_lazy_refcounts (img, o->lazy_refcounts) == -1)) {
    error_image ();
    return -1;
  }
  return 0;
}

int
cmd_amend (int argc, char **argv)
{
  static const struct option long_opts[] = {
    { "help", no_argument, NULL, OPT_HELP },
    { NULL },
  };
  struct image_create_opts opts = { .lazy_refcounts = -1 };
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
  r = amend (img, &opts);
  if (close_image (img) == -1)
    r = -1;
  return r == 0 ? 0 : 1;
}
