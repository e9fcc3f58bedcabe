/* SPDX-License-Identifier: BSD-3-Clause */
/* What the subcommands share: error lines, opening images, and parsing the
 * arguments several commands take (--output, -o creation options, sizes).
 *
 * Errors follow one shape: "cowbd-img: <message>" on one line.  Messages
 * about an image come from the engine (image_error), which names the file
 * and the fault; this file adds nothing to them.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "img.h"
#include "size.h"

/* ---- errors -------------------------------------------------------------- */

void
error_msg (const char *fmt, ...)
{
  va_list ap;

  fflush (stdout);
  fputs ("cowbd-img: ", stderr);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
}

void
error_image (void)
{
  error_msg ("%s", image_error ());
}

int
usage_hint (const char *cmd, int status)
{
  fprintf (stderr, "Try 'cowbd-img %s --help' for more information.\n", cmd);
  return status;
}

int
usage_error (const char *cmd, int status, const char *fmt, ...)
{
  va_list ap;

  fflush (stdout);
  fputs ("cowbd-img: ", stderr);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
  return usage_hint (cmd, status);
}

int
parse_output (const char *arg, enum output_format *out)
{
  if (strcmp (arg, "human") == 0)
    *out = OUTPUT_HUMAN;
  else if (strcmp (arg, "json") == 0)
    *out = OUTPUT_JSON;
  else {
    error_msg ("--output must be 'human' or 'json', not '%s'", arg);
    return -1;
  }
  return 0;
}

int
parse_size (const char *what, const char *arg, uint64_t *size)
{
  if (size_parse (arg, size) == -1) {
    if (errno == ERANGE)
      error_msg ("%s '%s' is too large (at most %lld bytes)", what, arg,
                 (long long) INT64_MAX);
    else
      error_msg ("%s '%s' is not a size (a number with an optional "
                 "suffix K, M, G, T, P, E; a fraction needs a suffix)",
                 what, arg);
    return -1;
  }
  return 0;
}

char *
xstrdup (const char *s)
{
  char *r = strdup (s);

  if (r == NULL) {
    perror ("cowbd-img: strdup");
    exit (1);
  }
  return r;
}

unsigned img_remote_timeout_ms;

/* ---- images ----------------------------------------------------------------- */

struct image *
open_image (const char *filename, const char *format, unsigned flags)
{
  struct image_open_opts opts = {
    .format = format, .flags = flags,
    .remote_timeout_ms = img_remote_timeout_ms,
  };
  struct image *img = image_open (filename, &opts);

  if (img == NULL && image_errno () == EBUSY &&
      (flags & (IMAGE_OPEN_READONLY | IMAGE_OPEN_FORCE_SHARE)) ==
      IMAGE_OPEN_READONLY)
    error_msg ("%s; -U (--force-share) opens it anyway", image_error ());
  else if (img == NULL)
    error_image ();
  return img;
}

const char *
image_name (struct image *img)
{
  struct image_info info;

  image_get_info (img, &info);
  return info.filename;
}

int
close_image (struct image *img)
{
  if (image_close (img) == -1) {
    error_image ();
    return -1;
  }
  return 0;
}

char *
resolve_backing (const char *overlay, const char *backing)
{
  char *r = image_resolve_backing (overlay, backing);

  if (r == NULL) {
    error_msg ("%s", image_error ());
    exit (1);
  }
  return r;
}

/* ---- -o creation options --------------------------------------------------- */

/* Splits the next "key=value" off *s at an unescaped comma, turning ",,"
 * into ",".  Returns the option, or NULL at the end. */
static char *
next_option (char **s)
{
  char *start = *s, *r, *w;

  if (start == NULL || *start == '\0')
    return NULL;
  for (r = w = start; *r; r++, w++) {
    if (*r == ',' && r[1] == ',')
      r++;
    else if (*r == ',') {
      *w = '\0';
      *s = r + 1;
      return start;
    }
    *w = *r;
  }
  *w = '\0';
  *s = NULL;
  return start;
}

static int
parse_bool (const char *key, const char *v, int *out)
{
  if (strcmp (v, "on") == 0 || strcmp (v, "true") == 0 ||
      strcmp (v, "yes") == 0)
    *out = 1;
  else if (strcmp (v, "off") == 0 || strcmp (v, "false") == 0 ||
           strcmp (v, "no") == 0)
    *out = 0;
  else {
    error_msg ("option %s must be on or off, not '%s'", key, v);
    return -1;
  }
  return 0;
}

static int
parse_prealloc (const char *v, enum image_prealloc *out)
{
  static const char *const names[] = { "off", "metadata", "falloc", "full" };
  size_t i;

  for (i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp (v, names[i]) == 0) {
      *out = (enum image_prealloc) i;
      return 0;
    }
  error_msg ("option preallocation must be off, metadata, falloc or full, "
             "not '%s'", v);
  return -1;
}

/* A size option that must fit in 32 bits (cluster_size, table_size). */
static int
parse_u32 (const char *key, const char *v, uint32_t *out)
{
  uint64_t n;

  if (parse_size (key, v, &n) == -1)
    return -1;
  if (n > UINT32_MAX) {
    error_msg ("option %s=%s is too large", key, v);
    return -1;
  }
  *out = (uint32_t) n;
  return 0;
}

/* The values of format-specific options (image_option) given with -o.
 * One command parses one set of options, so they live here: opts->options
 * points at this array.  Each option appears once (a later value
 * replaces an earlier one), so the formats' options bound the count. */
#define MAX_FORMAT_OPTIONS 32
static struct image_option_value format_values[MAX_FORMAT_OPTIONS];

/* The slot of the option named name in opts (a new one at the end if
 * it is not there yet). */
static struct image_option_value *
format_value (struct image_create_opts *opts, const char *name)
{
  size_t i;

  for (i = 0; i < opts->nr_options; i++)
    if (strcmp (format_values[i].name, name) == 0)
      return &format_values[i];
  assert (opts->nr_options < MAX_FORMAT_OPTIONS);
  opts->options = format_values;
  return &format_values[opts->nr_options++];
}

/* A format-specific option: its value parsed as its type says. */
static int
set_format_option (const struct image_option *o, char *v,
                   struct image_create_opts *opts)
{
  struct image_option_value val = { .name = o->name };
  uint32_t u;
  int b;

  switch (o->type) {
  case IMAGE_OPTION_STRING:
    val.string = v;
    break;
  case IMAGE_OPTION_BOOL:
    if (parse_bool (o->name, v, &b) == -1)
      return -1;
    val.number = (uint64_t) b;
    break;
  case IMAGE_OPTION_SIZE:
    if (parse_u32 (o->name, v, &u) == -1)
      return -1;
    val.number = u;
    break;
  }
  *format_value (opts, o->name) = val;
  return 0;
}

static int
set_create_option (const char *key, char *v,
                   struct image_create_opts *opts)
{
  const struct image_option *o;

  if (strcmp (key, "size") == 0)
    return parse_size ("size", v, &opts->size);
  if (strcmp (key, "backing_file") == 0)
    opts->backing_file = v;
  else if (strcmp (key, "backing_fmt") == 0)
    opts->backing_format = v;
  else if (strcmp (key, "cluster_size") == 0)
    return parse_u32 (key, v, &opts->cluster_size);
  else if (strcmp (key, "preallocation") == 0)
    return parse_prealloc (v, &opts->prealloc);
  else if ((o = image_option_lookup (key)) != NULL)
    return set_format_option (o, v, opts);
  else {
    error_msg ("invalid option '%s' (-o help lists them)", key);
    return -1;
  }
  return 0;
}

int
parse_create_options (char *arg, struct image_create_opts *opts)
{
  char *s = arg, *opt;

  while ((opt = next_option (&s)) != NULL) {
    char *eq = strchr (opt, '=');

    if (eq == NULL) {
      error_msg ("option '%s' needs a value (%s=VALUE)", opt, opt);
      return -1;
    }
    *eq = '\0';
    if (set_create_option (opt, eq + 1, opts) == -1)
      return -1;
  }
  return 0;
}

void
print_create_options (FILE *fp)
{
  fputs ("Supported options (-o OPTION=VALUE,...):\n"
         "  size=SIZE                virtual size\n"
         "  backing_file=FILE        backing file (as -b)\n"
         "  backing_fmt=FMT          backing file format (as -F)\n"
         "  cluster_size=SIZE        qed, qcow2: cluster size (a power "
         "of two)\n"
         "  table_size=N             qed: L1 and L2 table size in clusters "
         "(1 to 16)\n"
         "  preallocation=MODE       off, metadata (qed, qcow2), falloc, "
         "full\n"
         "  lazy_refcounts=on|off    qcow2\n"
         "  compat=0.10|1.1          qcow2\n"
         "  refcount_bits=N          qcow2\n"
         "  compression_type=zlib|zstd  qcow2: for compressed clusters\n",
         fp);
}
