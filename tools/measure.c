/* SPDX-License-Identifier: BSD-3-Clause */
/* cowbd-img measure [--output=human|json] [-O FMT] [-o OPTIONS]
 *                   (--size SIZE | [-f FMT] [-U] FILE)
 *
 * The file size a new image of format FMT needs: "required" to hold
 * FILE's data (or an empty image of SIZE), "fully-allocated" with every
 * cluster allocated.  The figures are qemu-img measure's, by its
 * formulas, so that a script sizing a volume gets the same answer:
 *
 *   raw     both the size, rounded up to 512.
 *   qcow2   fully-allocated = one header cluster + the L2 tables and the
 *           L1 table of every cluster (each rounded up to whole
 *           clusters) + the refcount blocks and table that count all of
 *           it, themselves included (a fixed point) + the data;
 *           required = fully-allocated - data + the data clusters FILE
 *           holds (with a backing file in -o, every cluster).
 *           "bitmaps" (qcow2 v3 from a qcow2 v3 file) is 0: the engine
 *           keeps no persistent bitmaps.
 *   qed     qemu-img cannot measure QED; ours, by the same rule: header
 *           cluster(s) + L1 table + every L2 table + data, and required
 *           less the data FILE does not hold.
 *
 * The data FILE holds is counted as qemu does: each extent that is
 * allocated data (not known zeros) counts from its cluster's start to
 * its end rounded up to the target's cluster.
 */
#include <config.h>

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "img.h"
#include "rounding.h"

/* The defaults of image_create for each format. */
#define QCOW2_CLUSTER 65536
#define QCOW2_REFCOUNT_BITS 16
#define QED_CLUSTER 65536
#define QED_TABLE 4

struct target {
  const char *format;
  uint64_t cluster;
  unsigned refcount_bits;
  uint32_t table_size;
  bool v3, backing, prealloc_data;
};

struct measure {
  uint64_t required, fully_allocated;
  bool has_bitmaps;
};

/* Refcount blocks and table clusters counting clusters, and themselves. */
static uint64_t
refcount_metadata (uint64_t clusters, uint64_t cs, unsigned bits)
{
  uint64_t per_block = cs * 8 / bits, per_table = cs / 8;
  uint64_t table = 0, blocks = 0, n = 0, last;

  do {
    last = n;
    blocks = DIV_ROUND_UP (clusters + table + blocks, per_block);
    table = DIV_ROUND_UP (blocks, per_table);
    n = clusters + blocks + table;
  } while (n != last);
  return (blocks + table) * cs;
}

static uint64_t
qcow2_full (uint64_t size, uint64_t cs, unsigned bits)
{
  uint64_t meta = cs, l2e, l1e;

  l2e = ROUND_UP (size / cs, cs / 8);
  meta += l2e * 8;
  l1e = ROUND_UP (l2e * 8 / cs, cs / 8);
  meta += l1e * 8;
  meta += refcount_metadata ((meta + size) / cs, cs, bits);
  return meta + size;
}

static uint64_t
qed_full (uint64_t size, uint64_t cs, uint32_t table_size)
{
  uint64_t table_bytes = table_size * cs, entries = table_bytes / 8;
  uint64_t l2 = DIV_ROUND_UP (size / cs, entries);

  return cs + table_bytes + l2 * table_bytes + size;
}

/* The bytes of data clusters img holds, counted as qemu-img counts them
 * (see the top of this file).  -1 on error (message printed). */
static int64_t
data_bytes (struct image *img, uint64_t cs)
{
  uint64_t size = image_size (img), off, n, total = 0;
  struct image_extent e;

  for (off = 0; off < size; off += n) {
    if (extent_at (img, off, size, &e) == -1) {
      error_image ();
      return -1;
    }
    n = e.length;
    if (!(e.flags & IMAGE_EXTENT_ZERO) && (e.flags & IMAGE_EXTENT_DATA) &&
        (e.flags & IMAGE_EXTENT_PRESENT)) {
      n = ROUND_UP (off + n, cs) - off;
      total += off % cs + n;
    }
  }
  return (int64_t) total;
}

/* Whether img's format could hold persistent bitmaps (qemu shows
 * "bitmaps" only then): qcow2 version 3. */
static bool
persistent_bitmaps (struct image *img)
{
  struct image_info info;

  image_get_info (img, &info);
  return info.specific.kind == IMAGE_INFO_QCOW2 &&
         strcmp (info.specific.qcow2.compat, "1.1") == 0;
}

static int
compute (const struct target *t, struct image *img, uint64_t size,
         struct measure *m)
{
  uint64_t cs = t->cluster, vsize, meta;
  int64_t data;

  if (strcmp (t->format, "raw") == 0) {
    m->required = m->fully_allocated = ROUND_UP (size, 512);
    return 0;
  }
  vsize = ROUND_UP (size, cs);
  if (strcmp (t->format, "qcow2") == 0)
    m->fully_allocated = qcow2_full (vsize, cs, t->refcount_bits);
  else
    m->fully_allocated = qed_full (vsize, cs, t->table_size);
  meta = m->fully_allocated - vsize;
  data = 0;
  if (t->prealloc_data || (img && t->backing))
    data = (int64_t) vsize;
  else if (img && (data = data_bytes (img, cs)) == -1)
    return -1;
  m->required = meta + (uint64_t) data;
  m->has_bitmaps = img && t->v3 && strcmp (t->format, "qcow2") == 0 &&
                   persistent_bitmaps (img);
  return 0;
}

static void
print (const struct measure *m, enum output_format out)
{
  struct json *j;

  if (out == OUTPUT_HUMAN) {
    printf ("required size: %" PRIu64 "\n", m->required);
    printf ("fully allocated size: %" PRIu64 "\n", m->fully_allocated);
    if (m->has_bitmaps)
      printf ("bitmaps size: 0\n");
    return;
  }
  j = json_new (stdout);
  json_begin_object (j, NULL);
  if (m->has_bitmaps)
    json_uint (j, "bitmaps", 0);
  json_uint (j, "required", m->required);
  json_uint (j, "fully-allocated", m->fully_allocated);
  json_end_object (j);
  json_free (j);
}

/* The number given to option name with -o, or 0. */
static uint64_t
option_number (const struct image_create_opts *o, const char *name)
{
  const struct image_option_value *v = image_option_find (o, name);

  return v ? v->number : 0;
}

/* The target from -O and -o.  Returns -1 with the message printed. */
static int
make_target (const char *format, const struct image_create_opts *o,
             struct target *t)
{
  bool qcow2 = strcmp (format, "qcow2") == 0, qed = strcmp (format, "qed")
                                                     == 0;
  uint64_t cs = o->cluster_size;
  uint64_t bits = option_number (o, "refcount_bits");
  uint64_t table = option_number (o, "table_size");
  const struct image_option_value *compat = image_option_find (o, "compat");

  if (!qcow2 && !qed && strcmp (format, "raw") != 0) {
    error_msg ("unknown output format '%s' (%s)", format, IMAGE_FORMATS);
    return -1;
  }
  *t = (struct target) {
    .format = format,
    .cluster = cs ? cs : qcow2 ? QCOW2_CLUSTER : QED_CLUSTER,
    .refcount_bits = bits ? bits : QCOW2_REFCOUNT_BITS,
    .table_size = table ? table : QED_TABLE,
    .v3 = compat == NULL || strcmp (compat->string, "0.10") != 0,
    .backing = o->backing_file != NULL,
    .prealloc_data = o->prealloc == IMAGE_PREALLOC_FALLOC ||
                     o->prealloc == IMAGE_PREALLOC_FULL,
  };
  if ((qcow2 && (cs & (cs - 1) || (cs && (cs < 512 || cs > (2u << 20))))) ||
      (qed && (cs & (cs - 1) || (cs && (cs < 4096 || cs > (64u << 20)))))) {
    error_msg ("cluster_size %" PRIu64 " is not valid for %s", cs, format);
    return -1;
  }
  if (t->refcount_bits & (t->refcount_bits - 1) || t->refcount_bits > 64 ||
      t->table_size & (t->table_size - 1) || t->table_size > 16) {
    error_msg ("refcount_bits must be a power of two up to 64, "
               "table_size one up to 16");
    return -1;
  }
  return 0;
}

static int
measure_file (const struct target *t, const char *file, const char *fmt,
              unsigned share, enum output_format out)
{
  struct measure m = { 0 };
  struct image *img = open_image (file, fmt, IMAGE_OPEN_READONLY | share);
  int r;

  if (img == NULL)
    return 1;
  r = compute (t, img, image_size (img), &m);
  if (close_image (img) == -1 || r == -1)
    return 1;
  print (&m, out);
  return 0;
}

enum { OPT_SIZE = 0x200 };

int
cmd_measure (int argc, char **argv)
{
  static const struct option long_opts[] = {
    { "help", no_argument, NULL, OPT_HELP },
    { "output", required_argument, NULL, OPT_OUTPUT },
    { "size", required_argument, NULL, OPT_SIZE },
    { "force-share", no_argument, NULL, 'U' },
    { NULL },
  };
  struct image_create_opts opts = { .format = NULL };
  enum output_format out = OUTPUT_HUMAN;
  const char *format = NULL, *out_fmt = "raw", *size_arg = NULL;
  struct measure m = { 0 };
  struct target t;
  unsigned share = 0;
  uint64_t size;
  int c;

  while ((c = getopt_long (argc, argv, "f:O:o:U", long_opts, NULL)) != -1) {
    switch (c) {
    case OPT_HELP: usage_command (stdout, "measure"); return 0;
    case OPT_OUTPUT:
      if (parse_output (optarg, &out) == -1)
        return 1;
      break;
    case OPT_SIZE: size_arg = optarg; break;
    case 'f': format = optarg; break;
    case 'O': out_fmt = optarg; break;
    case 'U': share = IMAGE_OPEN_FORCE_SHARE; break;
    case 'o':
      if (parse_create_options (optarg, &opts) == -1)
        return usage_hint ("measure", 1);
      break;
    default: return usage_hint ("measure", 1);
    }
  }
  if (argc - optind > 1 || (argc == optind) == (size_arg == NULL))
    return usage_error ("measure", 1, size_arg
                        ? "--size N cannot be used together with a filename"
                        : "Either --size N or one filename must be "
                        "specified");
  if (make_target (out_fmt, &opts, &t) == -1)
    return 1;
  if (size_arg == NULL)
    return measure_file (&t, argv[optind], format, share, out);
  if (parse_size ("size", size_arg, &size) == -1 ||
      compute (&t, NULL, size, &m) == -1)
    return 1;
  print (&m, out);
  return 0;
}
