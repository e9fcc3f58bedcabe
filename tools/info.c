/* SPDX-License-Identifier: BSD-3-Clause */
/* cowbd-img info [-f FMT] [--output=human|json] [--backing-chain] FILE
 *
 * Shows what image_get_info says, laid out as qemu-img info lays it out
 * (human lines, or JSON with qemu-img's member order).  The image is
 * opened read-only with its whole backing chain (the backing format
 * shown may be a probed one).  When only the chain fails to open (a
 * backing file missing, unreadable, corrupt, a loop), the image itself
 * is shown all the same, as qemu-img info (which does not open the
 * chain) shows it, with exit status 0, and the backing problem is given
 * as a warning on stderr, so that the user sees what to fix.  With
 * --backing-chain every image of the chain is shown, top first (JSON: a
 * list), and a chain that does not open is an error (exit 1), as it is
 * for qemu-img.
 *
 * Format-specific information (qemu-img's "Format specific information"
 * and "format-specific") comes from the engine's info->specific, a tag
 * and the format's own part, as qemu's ImageInfoSpecific; the table
 * `specifics` below prints it: a format that shows some adds one entry
 * with its two printers.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "img.h"
#include "size.h"

struct specific {
  enum image_info_kind kind;
  /* Lines after "Format specific information:", indented by 4. */
  void (*human) (const struct image_info_specific *spec);
  /* Members of "data" in {"type": format, "data": {...}}. */
  void (*json) (struct json *j, const struct image_info_specific *spec);
};

/* qcow2: what qemu-img shows.  Version 2 images (compat 0.10) have no
 * lazy refcounts, corrupt bit or extended L2 to show. */
static bool
qcow2_v3 (const struct image_info_qcow2 *q)
{
  return strcmp (q->compat, "0.10") != 0;
}

static const char *
truth (bool b)
{
  return b ? "true" : "false";
}

static void
qcow2_human (const struct image_info_specific *spec)
{
  const struct image_info_qcow2 *q = &spec->qcow2;

  printf ("    compat: %s\n"
          "    compression type: %s\n",
          q->compat, q->compression_type);
  if (qcow2_v3 (q))
    printf ("    lazy refcounts: %s\n", truth (q->lazy_refcounts));
  printf ("    refcount bits: %u\n", q->refcount_bits);
  if (qcow2_v3 (q))
    printf ("    corrupt: %s\n"
            "    extended l2: %s\n",
            truth (q->corrupt), truth (q->extended_l2));
}

static void
qcow2_json (struct json *j, const struct image_info_specific *spec)
{
  const struct image_info_qcow2 *q = &spec->qcow2;

  json_string (j, "compat", q->compat);
  json_string (j, "compression-type", q->compression_type);
  if (qcow2_v3 (q))
    json_bool (j, "lazy-refcounts", q->lazy_refcounts);
  json_uint (j, "refcount-bits", q->refcount_bits);
  if (qcow2_v3 (q)) {
    json_bool (j, "corrupt", q->corrupt);
    json_bool (j, "extended-l2", q->extended_l2);
  }
}

/* QED has its own information too (table_size), but qemu-img shows none
 * for it, and neither do we. */
static const struct specific specifics[] = {
  { IMAGE_INFO_QCOW2, qcow2_human, qcow2_json },
  { IMAGE_INFO_NONE, NULL, NULL },
};

static const struct specific *
find_specific (enum image_info_kind kind)
{
  const struct specific *s;

  for (s = specifics; s->human; s++)
    if (s->kind == kind)
      return s;
  return NULL;
}

static void
print_human (struct image *img, const struct image_info *info)
{
  const struct specific *spec = find_specific (info->specific.kind);
  char vbuf[32], dbuf[32];

  printf ("image: %s\n"
          "file format: %s\n"
          "virtual size: %s (%" PRIu64 " bytes)\n"
          "disk size: %s\n",
          info->filename, info->format,
          size_format (info->virtual_size, vbuf, sizeof vbuf),
          info->virtual_size,
          size_format (info->actual_size, dbuf, sizeof dbuf));
  if (info->cluster_size)
    printf ("cluster_size: %" PRIu32 "\n", info->cluster_size);
  if (info->dirty)
    printf ("cleanly shut down: no\n");
  if (info->backing_filename) {
    printf ("backing file: %s", info->backing_filename);
    if (info->full_backing_filename == NULL)
      printf (" (cannot determine actual path)");
    else if (strcmp (info->backing_filename,
                     info->full_backing_filename) != 0)
      printf (" (actual path: %s)", info->full_backing_filename);
    putchar ('\n');
    if (info->backing_format)
      printf ("backing file format: %s\n", info->backing_format);
  }
  if (snapshot_count (img))
    snapshot_print_list (img);
  if (spec) {
    printf ("Format specific information:\n");
    spec->human (&info->specific);
  }
}

static void
print_json (struct json *j, struct image *img, const struct image_info *info)
{
  const struct specific *spec = find_specific (info->specific.kind);

  json_begin_object (j, NULL);
  if (info->backing_filename && info->backing_format)
    json_string (j, "backing-filename-format", info->backing_format);
  if (snapshot_count (img))
    snapshot_json_list (j, img);
  json_uint (j, "virtual-size", info->virtual_size);
  json_string (j, "filename", info->filename);
  if (info->cluster_size)
    json_uint (j, "cluster-size", info->cluster_size);
  json_string (j, "format", info->format);
  json_uint (j, "actual-size", info->actual_size);
  if (spec) {
    json_begin_object (j, "format-specific");
    json_string (j, "type", info->format);
    json_begin_object (j, "data");
    spec->json (j, &info->specific);
    json_end_object (j);
    json_end_object (j);
  }
  if (info->backing_filename && info->full_backing_filename)
    json_string (j, "full-backing-filename", info->full_backing_filename);
  if (info->backing_filename)
    json_string (j, "backing-filename", info->backing_filename);
  json_bool (j, "dirty-flag", info->dirty);
  json_end_object (j);
}

static void
show (struct image *img, enum output_format output, bool chain)
{
  struct image_info info;
  struct json *j = NULL;
  bool first = true;

  if (output == OUTPUT_JSON) {
    j = json_new (stdout);
    if (chain)
      json_begin_list (j, NULL);
  }
  for (; img; img = chain ? image_backing (img) : NULL, first = false) {
    image_get_info (img, &info);
    if (j)
      print_json (j, img, &info);
    else {
      if (!first)
        putchar ('\n');
      print_human (img, &info);
    }
  }
  if (j) {
    if (chain)
      json_end_list (j);
    json_free (j);
  }
}

/* Opens the image with its chain or, if only the chain fails, without
 * it (a warning says why).  NULL with the message printed. */
static struct image *
open_alone (const char *filename, const char *format, unsigned share)
{
  struct image_open_opts opts = {
    .format = format, .flags = IMAGE_OPEN_READONLY | share,
    .remote_timeout_ms = img_remote_timeout_ms,
  };
  struct image *img = image_open (filename, &opts);
  char *why;

  if (img != NULL || image_errno () == EBUSY)
    return img ? img : open_image (filename, format, opts.flags);
  why = xstrdup (image_error ());
  opts.flags |= IMAGE_OPEN_NO_BACKING;
  img = image_open (filename, &opts);
  if (img == NULL)
    error_msg ("%s", why);      /* the image itself: the first error */
  else
    error_msg ("warning: %s (the image is shown without its backing "
               "chain)", why);
  free (why);
  return img;
}

int
cmd_info (int argc, char **argv)
{
  static const struct option long_opts[] = {
    { "help", no_argument, NULL, OPT_HELP },
    { "force-share", no_argument, NULL, 'U' },
    { "output", required_argument, NULL, OPT_OUTPUT },
    { "backing-chain", no_argument, NULL, OPT_BACKING_CHAIN },
    { NULL },
  };
  enum output_format output = OUTPUT_HUMAN;
  const char *format = NULL;
  bool chain = false;
  unsigned share = 0;
  struct image *img;
  int c;

  while ((c = getopt_long (argc, argv, "f:U", long_opts, NULL)) != -1) {
    switch (c) {
    case OPT_HELP: usage_command (stdout, "info"); return 0;
    case 'U': share = IMAGE_OPEN_FORCE_SHARE; break;
    case OPT_OUTPUT:
      if (parse_output (optarg, &output) == -1)
        return usage_hint ("info", 1);
      break;
    case OPT_BACKING_CHAIN: chain = true; break;
    case 'f': format = optarg; break;
    default: return usage_hint ("info", 1);
    }
  }
  if (argc - optind != 1)
    return usage_error ("info", 1, "expecting one image file name");

  img = chain ? open_image (argv[optind], format, IMAGE_OPEN_READONLY | share)
              : open_alone (argv[optind], format, share);
  if (img == NULL)
    return 1;
  show (img, output, chain);
  image_close (img);            /* read-only: nothing to write back */
  return 0;
}
