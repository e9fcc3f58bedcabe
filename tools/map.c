/* SPDX-License-Identifier: BSD-3-Clause */
/* cowbd-img map [-f FMT] [-U] [--output=human|json] [--start-offset=OFF]
 *               [--max-length=LEN] FILE
 *
 * Walks image_extents over the image (through the backing chain), or
 * over [OFF, OFF + LEN) of it,
 * and prints qemu-img map's two layouts:
 *
 *   json   one entry per run:
 *          { "start", "length", "depth", "present", "zero", "data"
 *            [, "offset"] }
 *          where adjacent runs merge when depth, present, zero, data and
 *          the file match and their host offsets are contiguous or both
 *          absent (qemu-img's entry_mergeable);
 *   human  only the data (allocated, not known zero) with the file that
 *          holds it:  Offset  Length  Mapped to  File
 *          where runs that are not data also merge with each other.
 *
 * image_extents already reports depth and PRESENT as qemu-img map does
 * (see image.h), so this file only merges and prints.
 */
#include <config.h>

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "img.h"
#include "minmax.h"

struct map_entry {
  uint64_t start, length;
  unsigned depth;
  bool present, zero, data;
  bool has_offset;
  uint64_t offset;              /* host offset, if has_offset */
  const char *filename;         /* the file holding it, if has_offset */
};

struct map_state {
  enum output_format output;
  struct map_entry curr;        /* the run being merged; length 0: none */
  bool first;                   /* nothing printed yet */
};

static bool
mergeable (const struct map_entry *a, const struct map_entry *b)
{
  if (a->length == 0 ||
      a->zero != b->zero || a->data != b->data || a->depth != b->depth ||
      a->present != b->present || a->has_offset != b->has_offset ||
      !a->filename != !b->filename)
    return false;
  if (a->filename && strcmp (a->filename, b->filename) != 0)
    return false;
  return !a->has_offset || a->offset + a->length == b->offset;
}

static void
print_json_entry (struct map_state *s, const struct map_entry *e)
{
  printf ("%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64
          ", \"depth\": %u, \"present\": %s, \"zero\": %s, \"data\": %s",
          s->first ? "[" : ",\n", e->start, e->length, e->depth,
          e->present ? "true" : "false", e->zero ? "true" : "false",
          e->data ? "true" : "false");
  if (e->has_offset)
    printf (", \"offset\": %" PRIu64, e->offset);
  putchar ('}');
}

/* Prints e; next (NULL at the end) is the run that follows, which human
 * output may relabel so that runs without data merge. */
static int
print_entry (struct map_state *s, const struct map_entry *e,
             struct map_entry *next)
{
  if (s->output == OUTPUT_JSON)
    print_json_entry (s, e);
  else {
    if (s->first)
      printf ("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    if (e->data && !e->has_offset) {
      error_msg ("%s: the human map cannot show compressed clusters "
                 "(use --output=json)", e->filename ? e->filename : "image");
      return -1;
    }
    if (e->data && !e->zero)
      printf ("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n",
              e->start, e->length, e->offset, e->filename);
    if (next && (!next->data || next->zero) && (!e->data || e->zero)) {
      next->data = false;
      next->zero = true;
    }
  }
  s->first = false;
  return 0;
}

static int
on_extent (void *opaque, const struct image_extent *e)
{
  struct map_state *s = opaque;
  struct map_entry next = {
    .start = e->offset,
    .length = e->length,
    .depth = e->depth,
    .present = e->flags & IMAGE_EXTENT_PRESENT,
    .zero = e->flags & IMAGE_EXTENT_ZERO,
    .data = e->flags & IMAGE_EXTENT_DATA,
    .has_offset = e->host_offset >= 0,
    .offset = e->host_offset >= 0 ? (uint64_t) e->host_offset : 0,
    .filename = e->host_offset >= 0 ? e->filename : NULL,
  };

  if (mergeable (&s->curr, &next)) {
    s->curr.length += next.length;
    return 0;
  }
  if (s->curr.length > 0 && print_entry (s, &s->curr, &next) == -1)
    return 1;
  s->curr = next;
  return 0;
}

/* Maps [start, start + max) clipped to the image.  An empty range still
 * prints one entry of length 0 at start, as qemu-img map does. */
static int
map (struct image *img, enum output_format output, uint64_t start,
     uint64_t max)
{
  struct map_state s = { .output = output, .first = true,
                         .curr = { .start = start } };
  uint64_t size = image_size (img);
  uint64_t end = max > size - MIN (start, size) ? size : start + max;
  int r = 0;

  if (start < end)
    r = image_extents (img, end - start, start, 0, on_extent, &s);
  if (r == -1)
    error_image ();
  if (r != 0)
    return 1;
  if ((s.curr.length > 0 || s.first) &&
      print_entry (&s, &s.curr, NULL) == -1)
    return 1;
  if (output == OUTPUT_JSON)
    printf ("%s]\n", s.first ? "[" : "");
  else if (s.first)
    printf ("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
  return 0;
}

enum { OPT_START = 0x200, OPT_MAX_LENGTH };

int
cmd_map (int argc, char **argv)
{
  static const struct option long_opts[] = {
    { "help", no_argument, NULL, OPT_HELP },
    { "force-share", no_argument, NULL, 'U' },
    { "output", required_argument, NULL, OPT_OUTPUT },
    { "start-offset", required_argument, NULL, OPT_START },
    { "max-length", required_argument, NULL, OPT_MAX_LENGTH },
    { NULL },
  };
  enum output_format output = OUTPUT_HUMAN;
  uint64_t start = 0, max = UINT64_MAX;
  const char *format = NULL;
  unsigned share = 0;
  struct image *img;
  int c, status;

  while ((c = getopt_long (argc, argv, "f:U", long_opts, NULL)) != -1) {
    switch (c) {
    case OPT_HELP: usage_command (stdout, "map"); return 0;
    case 'U': share = IMAGE_OPEN_FORCE_SHARE; break;
    case OPT_OUTPUT:
      if (parse_output (optarg, &output) == -1)
        return usage_hint ("map", 1);
      break;
    case 'f': format = optarg; break;
    case OPT_START:
      if (parse_size ("start offset", optarg, &start) == -1)
        return 1;
      break;
    case OPT_MAX_LENGTH:
      if (parse_size ("max length", optarg, &max) == -1)
        return 1;
      break;
    default: return usage_hint ("map", 1);
    }
  }
  if (argc - optind != 1)
    return usage_error ("map", 1, "expecting one image file name");

  img = open_image (argv[optind], format, IMAGE_OPEN_READONLY | share);
  if (img == NULL)
    return 1;
  status = map (img, output, start, max);
  image_close (img);
  return status;
}
