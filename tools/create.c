/* SPDX-License-Identifier: BSD-3-Clause */
/* cowbd-img create [-q] [-f FMT] [-b BACKING [-F BACKING_FMT]] [-u]
 *                  [-o OPTIONS] [-p] FILE [SIZE]
 *
 * The engine does the work (image_create); this file gathers the options.
 * The backing file is opened only by the engine (an open costs more than
 * a header read on tmpfs, where finding holes walks the page cache): when
 * SIZE is omitted it takes the backing file's size, and when -F is
 * omitted we probe the format (image_probe reads the first sector) and
 * store it in the new image, as qemu-img 5 did: a raw backing file
 * recorded as raw can never later be probed as something else because of
 * what a guest wrote into it.  -u skips the probe and the engine does not
 * open the backing file either: it need not exist, and the size must be
 * given.
 *
 * Preallocation can take long: the engine calls our progress callback
 * between chunks, which draws the bar (-p) and cancels the create when a
 * signal came (Ctrl-C); the engine then removes the partial file.  A
 * signal that comes after the engine finished also removes the file, so
 * that an interrupted create never leaves an image behind.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "img.h"

static const char *const prealloc_names[] = {
  "off", "metadata", "falloc", "full",
};

/* Refuses to make an image over its own backing file, which creating it
 * would destroy. */
static bool
own_backing (const char *filename, const char *backing)
{
  CLEANUP_FREE char *path = resolve_backing (filename, backing);

  if (!image_same_file (path, filename))
    return false;
  error_msg ("%s: an image cannot be its own backing file", filename);
  return true;
}

/* " NAME=VALUE" of a format-specific option, if it was given (a size
 * of 0, the default, is not shown). */
static void
print_format_option (const struct image_create_opts *opts,
                     const struct image_option *o)
{
  const struct image_option_value *v = image_option_find (opts, o->name);

  if (v == NULL)
    return;
  switch (o->type) {
  case IMAGE_OPTION_STRING:
    printf (" %s=%s", o->name, v->string);
    break;
  case IMAGE_OPTION_BOOL:
    printf (" %s=%s", o->name, v->number ? "on" : "off");
    break;
  case IMAGE_OPTION_SIZE:
    if (v->number)
      printf (" %s=%" PRIu64, o->name, v->number);
    break;
  }
}

/* "Formatting 'FILE', fmt=qed size=N ...", as qemu-img prints it. */
static void
print_formatting (const char *filename, const char *format,
                  const struct image_create_opts *opts)
{
  const struct image_option *o;
  unsigned i;

  printf ("Formatting '%s', fmt=%s size=%" PRIu64, filename, format,
          opts->size);
  if (opts->backing_file)
    printf (" backing_file=%s", opts->backing_file);
  if (opts->backing_format)
    printf (" backing_fmt=%s", opts->backing_format);
  if (opts->cluster_size)
    printf (" cluster_size=%" PRIu32, opts->cluster_size);
  if (opts->prealloc != IMAGE_PREALLOC_OFF)
    printf (" preallocation=%s", prealloc_names[opts->prealloc]);
  for (i = 0; (o = image_option_at (i)) != NULL; i++)
    print_format_option (opts, o);
  putchar ('\n');
  fflush (stdout);
}

/* Checks the backing file name, and probes its format when -F is not
 * given (the engine reads the backing file's header itself, for its size
 * and to refuse a missing one). */
static int
prepare_backing (const char *filename, struct image_create_opts *opts,
                 bool unsafe)
{
  CLEANUP_FREE char *path = NULL;

  if (own_backing (filename, opts->backing_file))
    return -1;
  opts->no_backing_check = unsafe;
  if (unsafe || opts->backing_format)
    return 0;
  path = resolve_backing (filename, opts->backing_file);
  opts->backing_format = image_probe (path);
  if (opts->backing_format == NULL) {
    error_msg ("%s: backing file: %s", filename, image_error ());
    return -1;
  }
  return 0;
}

/* The size the engine gave the new image (taken from its backing file). */
static void
read_new_size (const char *filename, struct image_create_opts *opts)
{
  struct image_open_opts oo = {
    .flags = IMAGE_OPEN_READONLY | IMAGE_OPEN_NO_BACKING,
    .remote_timeout_ms = img_remote_timeout_ms,
  };
  struct image *img = image_open (filename, &oo);

  if (img) {
    opts->size = image_size (img);
    image_close (img);
  }
}

static int
create_progress (void *opaque, uint64_t done, uint64_t total)
{
  progress_update (opaque, done, total);
  return interrupted ();
}

/* Runs the engine's create with progress and interruption. */
static int
do_create (const char *filename, struct image_create_opts *opts,
           bool show_progress)
{
  struct progress *p = progress_new (show_progress);
  int r;

  interrupt_install ();
  opts->progress = create_progress;
  opts->progress_opaque = p;
  r = image_create (filename, opts);
  progress_free (p);
  if (interrupted ()) {
    if (r == 0)
      unlink (filename);
    interrupt_exit (filename);
  }
  if (r == -1) {
    error_image ();
    return 1;
  }
  return 0;
}

int
cmd_create (int argc, char **argv)
{
  static const struct option long_opts[] = {
    { "help", no_argument, NULL, OPT_HELP },
    { NULL },
  };
  struct image_create_opts opts = {
    .remote_timeout_ms = img_remote_timeout_ms,
  };
  const char *filename, *format = IMAGE_DEFAULT_FORMAT;
  bool quiet = false, unsafe = false, show_progress = false;
  bool have_size = false;
  int c, r;

  while ((c = getopt_long (argc, argv, "qf:b:F:uo:p", long_opts, NULL))
         != -1) {
    switch (c) {
    case OPT_HELP: usage_command (stdout, "create"); return 0;
    case 'q': quiet = true; break;
    case 'f': format = optarg; break;
    case 'b': opts.backing_file = optarg; break;
    case 'F': opts.backing_format = optarg; break;
    case 'u': unsafe = true; break;
    case 'p': show_progress = true; break;
    case 'o':
      if (strcmp (optarg, "help") == 0 || strcmp (optarg, "?") == 0) {
        print_create_options (stdout);
        return 0;
      }
      if (parse_create_options (optarg, &opts) == -1)
        return usage_hint ("create", 1);
      have_size |= opts.size != 0;
      break;
    default: return usage_hint ("create", 1);
    }
  }
  if (optind >= argc || argc - optind > 2)
    return usage_error ("create", 1, "expecting FILE and an optional SIZE");
  filename = argv[optind];
  if (argc - optind == 2) {
    if (parse_size ("size", argv[optind + 1], &opts.size) == -1)
      return 1;
    have_size = true;
  }
  opts.format = format;
  if (opts.backing_file && opts.backing_file[0] == '\0')
    opts.backing_file = NULL;
  if (opts.backing_format && opts.backing_file == NULL)
    return usage_error ("create", 1, "-F needs a backing file (-b)");
  if (!have_size && (opts.backing_file == NULL || unsafe))
    return usage_error ("create", 1, "%s: SIZE is needed %s", filename,
                        opts.backing_file ? "with -u" :
                        "when there is no backing file");
  if (opts.backing_file && prepare_backing (filename, &opts, unsafe) == -1)
    return 1;
  /* qemu-img prints the line first.  Without SIZE we learn the size (the
   * backing file's) only from the new image: the line then comes after.
   * Progress (preallocation) never goes with a backing file. */
  if (!quiet && have_size)
    print_formatting (filename, format, &opts);
  r = do_create (filename, &opts, show_progress && !quiet);
  if (r == 0 && !quiet && !have_size) {
    read_new_size (filename, &opts);
    print_formatting (filename, format, &opts);
  }
  return r;
}
