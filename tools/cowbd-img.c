/* SPDX-License-Identifier: BSD-3-Clause */
/* cowbd-img: the image command line, in the manner of qemu-img.
 *
 *   cowbd-img COMMAND [OPTIONS...] ARGS...
 *
 * This file only dispatches: the table below names each command, its
 * synopsis and its options (printed by `cowbd-img COMMAND --help`, and the
 * same lines as man/cowbd-img.1.pod's SYNOPSIS: tests/test-img-help.sh
 * checks that they agree), and the function in the command's own file
 * that runs it.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "img.h"

struct command {
  const char *name;
  int (*run) (int argc, char **argv);
  const char *synopsis;         /* after "cowbd-img " */
  const char *summary;
  const char *options;          /* one option a line, indented */
};

static const struct command commands[] = {
  { "create", cmd_create,
    "create [-q] [-f FMT] [-b BACKING [-F BACKING_FMT]] [-u] [-o OPTIONS] "
    "[-p] FILE [SIZE]",
    "create a new image (of the backing file's size when SIZE is omitted)",
    "  -f FMT         format: " IMAGE_FORMATS " (default "
    IMAGE_DEFAULT_FORMAT ")\n"
    "  -b BACKING     backing file, stored as given (relative to FILE's "
    "directory)\n"
    "  -F BACKING_FMT format of the backing file (default: probed)\n"
    "  -u             do not open the backing file (SIZE is then required)\n"
    "  -o OPTIONS     cluster_size, table_size (qed), preallocation=off|"
    "metadata|falloc|full,\n"
    "                 lazy_refcounts, compat, refcount_bits (qcow2); "
    "-o help lists them\n"
    "  -p             show progress (on a terminal); Ctrl-C removes the "
    "partial file\n"
    "  -q             quiet\n" },
  { "info", cmd_info,
    "info [-f FMT] [-U] [--output=human|json] [--backing-chain] FILE",
    "show an image's format, sizes and backing file",
    "  -f FMT             format (default: probed)\n"
    "  --output=FORMAT    human (default) or json\n"
    "  --backing-chain    also show every image of the backing chain\n"
    "  -U, --force-share  open it even in use (lock nothing against "
    "writers)\n" },
  { "check", cmd_check,
    "check [-q] [-f FMT] [-U] [-r leaks|all] [--output=human|json] FILE",
    "check an image's metadata for consistency, and repair it",
    "  -f FMT             format (default: probed)\n"
    "  -r leaks           repair leaked clusters\n"
    "  -r all             repair leaks and drop invalid table entries\n"
    "  --output=FORMAT    human (default) or json\n"
    "  -U, --force-share  open it even in use (lock nothing against "
    "writers; not with -r)\n"
    "  -q                 quiet\n"
    "Exit status: 0 clean, 1 the check could not run, 2 corruptions,\n"
    "3 leaked clusters only, 63 the format has no check.\n" },
  { "map", cmd_map,
    "map [-f FMT] [-U] [--output=human|json] [--start-offset=OFFSET] "
    "[--max-length=LENGTH] FILE",
    "show where each range of an image's data lives in the backing chain",
    "  -f FMT             format (default: probed)\n"
    "  --start-offset=OFFSET  map from OFFSET (default 0)\n"
    "  --max-length=LENGTH    map at most LENGTH bytes (default: to the "
    "end)\n"
    "  --output=FORMAT    human (default: allocated data only) or json\n"
    "  -U, --force-share  open it even in use (lock nothing against "
    "writers)\n" },
  { "convert", cmd_convert,
    "convert [-q] [-p] [-n] [--target-is-zero] [-W] [-c] [-f FMT] [-U] "
    "[-t CACHE] [-T SRC_CACHE] [-O OUTPUT_FMT] [-B BACKING "
    "[-F BACKING_FMT]] [-o OPTIONS] [-S SPARSE_SIZE] [-m NUM] SRC DST",
    "copy an image (through its backing chain) into a new image, "
    "keeping holes; SRC and DST may be NBD URIs (DST: an existing "
    "export)",
    "  -f FMT         format of SRC (default: probed)\n"
    "  -U, --force-share  open SRC even in use (lock nothing against "
    "writers)\n"
    "  -O OUTPUT_FMT  format of DST (default raw)\n"
    "  -o OPTIONS     creation options of DST, as create's -o\n"
    "  -B BACKING     DST is an overlay over BACKING holding only what "
    "differs\n"
    "  -F BACKING_FMT format of BACKING (required with -B)\n"
    "  -n             DST exists already: do not create it\n"
    "  --target-is-zero  with -n: DST reads zeros, do not write them\n"
    "  -S SPARSE_SIZE leave out runs of zeros this long or longer "
    "(default 4k;\n"
    "                 0: write everything)\n"
    "  -W             write chunks in any order (default: in order)\n"
    "  -m NUM         requests in flight (1 to 16, default 8)\n"
    "  -t CACHE, -T SRC_CACHE  cache modes (accepted, see the man "
    "page)\n"
    "  -c             write DST's clusters compressed (qcow2; zlib, or "
    "zstd with\n"
    "                 -o compression_type=zstd)\n"
    "  -p             show progress (on a terminal)\n"
    "  -q             quiet\n" },
  { "compare", cmd_compare,
    "compare [-q] [-p] [-s] [-f FMT] [-F FMT] [-U] FILE1 FILE2",
    "compare the contents of two images",
    "  -f FMT   format of FILE1 (default: probed)\n"
    "  -F FMT   format of FILE2 (default: probed)\n"
    "  -s       strict: images of different sizes or allocation differ\n"
    "  -U, --force-share  open them even in use (lock nothing against "
    "writers)\n"
    "  -p       show progress (on a terminal)\n"
    "  -q       quiet\n"
    "Exit status: 0 identical, 1 different, 2 an image could not be opened\n"
    "(or a usage error), 3 allocation status could not be read, 4 read "
    "error.\n" },
  { "commit", cmd_commit,
    "commit [-q] [-p] [-d] [-f FMT] [-b BASE] FILE",
    "write an overlay's own data into its backing file",
    "  -f FMT   format of FILE (default: probed)\n"
    "  -b BASE  commit into BASE, deeper in the chain: everything above "
    "it (implies -d)\n"
    "  -d       keep FILE's data (do not empty it afterwards)\n"
    "  -p       show progress (on a terminal)\n"
    "  -q       quiet\n" },
  { "rebase", cmd_rebase,
    "rebase [-q] [-p] [-u] [-f FMT] -b BACKING [-F BACKING_FMT] FILE",
    "change an image's backing file",
    "  -f FMT          format of FILE (default: probed)\n"
    "  -b BACKING      the new backing file (\"\" removes the backing file)\n"
    "  -F BACKING_FMT  format of BACKING (default: probed)\n"
    "  -u              unsafe: rewrite the header only, copy nothing\n"
    "  -p              show progress (on a terminal)\n"
    "  -q              quiet\n" },
  { "resize", cmd_resize,
    "resize [-q] [-f FMT] [--shrink] [--preallocation=MODE] FILE [+|-]SIZE",
    "change an image's virtual size (+SIZE, -SIZE: relative to it)",
    "  -f FMT               format (default: probed)\n"
    "  --shrink             allow a smaller size (data past it is lost)\n"
    "  --preallocation=MODE off (default); falloc or full (raw only)\n"
    "  -q                   quiet\n" },
  { "measure", cmd_measure,
    "measure [--output=human|json] [-O OUTPUT_FMT] [-o OPTIONS] "
    "(--size SIZE | [-f FMT] [-U] FILE)",
    "the file size a new image needs: for FILE's data, and fully allocated",
    "  --size SIZE        measure an empty image of SIZE\n"
    "  -f FMT             format of FILE (default: probed)\n"
    "  -O OUTPUT_FMT      format of the new image (default raw)\n"
    "  -o OPTIONS         its creation options, as create's -o\n"
    "  --output=FORMAT    human (default) or json\n"
    "  -U, --force-share  open FILE even in use (lock nothing against "
    "writers)\n" },
  { "snapshot", cmd_snapshot,
    "snapshot [-f FMT] [-U] [-q] [-l | -c NAME | -a NAME | -d NAME] FILE",
    "list, create, apply or delete a qcow2 image's internal snapshots",
    "  -l                 list the snapshots\n"
    "  -c NAME            create a snapshot NAME of the image as it is\n"
    "  -a NAME            apply the snapshot whose id or name is NAME: the\n"
    "                     image becomes what it was then\n"
    "  -d NAME            delete the (first) snapshot named NAME\n"
    "  -q                 quiet (accepted; nothing is printed)\n"
    "  -f FMT             format (default: probed)\n"
    "  -U, --force-share  open it even in use (lock nothing against "
    "writers; -l only)\n" },
  { "amend", cmd_amend,
    "amend [-q] [-p] [-f FMT] -o OPTIONS FILE",
    "change a qcow2 image's options in place",
    "  -f FMT      format (default: probed)\n"
    "  -o OPTIONS  lazy_refcounts=on|off, compat=0.10|1.1, size;\n"
    "              backing_file and backing_fmt only as they are\n"
    "  -p, -q      accepted (amend prints nothing)\n" },
};

#define NR_COMMANDS (sizeof commands / sizeof commands[0])

static const struct command *
find_command (const char *name)
{
  size_t i;

  for (i = 0; i < NR_COMMANDS; i++)
    if (strcmp (commands[i].name, name) == 0)
      return &commands[i];
  return NULL;
}

void
usage_command (FILE *fp, const char *name)
{
  const struct command *c = find_command (name);

  fprintf (fp, "Usage: cowbd-img %s\n%s.\n\n%s", c->synopsis, c->summary,
           c->options);
}

static void
usage (FILE *fp)
{
  size_t i;

  fprintf (fp,
           "Usage: cowbd-img COMMAND [OPTIONS...] ARGS...\n"
           "       cowbd-img --remote-timeout=SECONDS COMMAND [OPTIONS...] "
           "ARGS...\n"
           "       cowbd-img COMMAND --help\n"
           "       cowbd-img --help | --version\n"
           "\n"
           "Global option:\n"
           "  --remote-timeout=SECONDS  a request to a remote (nbd://) image\n"
           "                            that gets no answer in this time\n"
           "                            fails (1 to 3600; default 10)\n"
           "\n"
           "Commands:\n");
  for (i = 0; i < NR_COMMANDS; i++)
    fprintf (fp, "  %s\n", commands[i].synopsis);
  fprintf (fp,
           "\n"
           "Formats: " IMAGE_FORMATS ".  SIZE takes the suffixes "
           "K, M, G, T, P, E (powers of 1024).\n"
           "See cowbd-img(1).\n");
}

/* --remote-timeout=SECONDS or --remote-timeout SECONDS at argv[1]: the
 * number of words taken (0: not there), or -1 after a message. */
static int
parse_remote_timeout (int argc, char **argv)
{
  const char *opt = "--remote-timeout", *v;
  size_t len = strlen (opt);
  char *end;
  unsigned long n;
  int taken = 1;

  if (argc < 2 || strncmp (argv[1], opt, len) != 0)
    return 0;
  if (argv[1][len] == '=')
    v = argv[1] + len + 1;
  else if (argv[1][len] == '\0' && argc > 2)
    v = argv[2], taken = 2;
  else
    return argv[1][len] == '\0' ?
      (error_msg ("%s: expected SECONDS", opt), -1) : 0;
  errno = 0;
  n = strtoul (v, &end, 10);
  if (errno || end == v || *end || v[0] == '-' || n < 1 || n > 3600) {
    error_msg ("%s=%s: expected 1 to 3600 seconds", opt, v);
    return -1;
  }
  img_remote_timeout_ms = (unsigned) n * 1000;
  return taken;
}

int
main (int argc, char **argv)
{
  const struct command *c;
  int taken = parse_remote_timeout (argc, argv);

  if (taken == -1)
    return 1;
  argc -= taken;
  argv += taken;
  if (argc < 2) {
    error_msg ("expecting a command");
    fprintf (stderr, "Try 'cowbd-img --help' for more information.\n");
    return 1;
  }
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0) {
    usage (stdout);
    return 0;
  }
  if (strcmp (argv[1], "--version") == 0 || strcmp (argv[1], "-V") == 0) {
    printf ("cowbd-img %s\n", PACKAGE_VERSION);
    return 0;
  }
  c = find_command (argv[1]);
  if (c == NULL) {
    error_msg ("unknown command '%s'", argv[1]);
    fprintf (stderr, "Try 'cowbd-img --help' for more information.\n");
    return 1;
  }
  return c->run (argc - 1, argv + 1);
}
