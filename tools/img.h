/* SPDX-License-Identifier: BSD-3-Clause */
/* cowbd-img: what the subcommand files share.  Sectioned by the file that
 * defines each part.
 *
 * Every subcommand is `int cmd_NAME (int argc, char **argv)` and returns
 * the process exit status; argv[0] is the subcommand's name.  A subcommand
 * reports a failure with one line on stderr ("cowbd-img: <message>") and
 * the exit status qemu-img uses for that command.  Everything it does goes
 * through the engine (formats/image.h); no subcommand touches an image's
 * file directly.
 */
#ifndef COWBD_IMG_H
#define COWBD_IMG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "image.h"

/* ---- cowbd-img.c ----------------------------------------------------- */

int cmd_create (int argc, char **argv);
int cmd_info (int argc, char **argv);
int cmd_check (int argc, char **argv);
int cmd_map (int argc, char **argv);
int cmd_convert (int argc, char **argv);
int cmd_compare (int argc, char **argv);
int cmd_commit (int argc, char **argv);
int cmd_rebase (int argc, char **argv);
int cmd_resize (int argc, char **argv);
int cmd_measure (int argc, char **argv);
int cmd_snapshot (int argc, char **argv);
int cmd_amend (int argc, char **argv);

/* Prints the usage of command name (its synopsis and options) to fp. */
void usage_command (FILE *fp, const char *name);

/* ---- options.c ---------------------------------------------------------- */

/* Long options every subcommand accepts, and their getopt values. */
enum {
  OPT_HELP = 0x100,
  OPT_OUTPUT,
  OPT_BACKING_CHAIN,
};

/* --remote-timeout=SECONDS (a global option, before the command), in
 * milliseconds for image_open_opts; 0: the engine's default. */
extern unsigned img_remote_timeout_ms;

/* "cowbd-img: <printf message>" on stderr. */
void error_msg (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));
/* "cowbd-img: <image_error ()>" on stderr: the engine's message already
 * names the file and the fault. */
void error_image (void);
/* A usage error of command cmd: the message, a hint to --help, and
 * returns status (the command's exit status for usage errors). */
int usage_error (const char *cmd, int status, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));
/* The usage error for an unknown option or a missing argument (getopt
 * has already said which). */
int usage_hint (const char *cmd, int status);

/* --output=human|json */
enum output_format { OUTPUT_HUMAN, OUTPUT_JSON };
int parse_output (const char *arg, enum output_format *out);

/* Opens an image, printing the engine's message when it fails. */
struct image *open_image (const char *filename, const char *format,
                          unsigned flags);
/* The file name of an open image (as it was opened). */
const char *image_name (struct image *img);
/* Closes an image; returns -1 (message printed) if writing back failed. */
int close_image (struct image *img);

/* Parses -o OPT=V[,OPT=V...] into opts (qemu-img's syntax: ",," is a
 * literal comma).  Unknown options and bad values are usage errors:
 * returns -1 with the message printed.  Strings in opts point into arg,
 * which is modified; the format-specific options' values (opts->options)
 * are kept in one array of options.c: a command parses one set. */
int parse_create_options (char *arg, struct image_create_opts *opts);
/* Prints the options -o accepts (-o help). */
void print_create_options (FILE *fp);

/* The backing file name as the engine resolves it: relative names are
 * taken from the directory of overlay.  Returns a malloc'd string. */
char *resolve_backing (const char *overlay, const char *backing);

/* strdup, exiting on ENOMEM. */
char *xstrdup (const char *s);

/* Parses a size ("10G"), printing a message naming what when it fails. */
int parse_size (const char *what, const char *arg, uint64_t *size);

/* ---- progress.c ------------------------------------------------------- */

/* Progress for -p: a bar on stdout with percentage and rate, drawn only
 * when stdout is a terminal, at most ten times a second. */
struct progress;
struct progress *progress_new (bool requested);
void progress_update (struct progress *p, uint64_t done, uint64_t total);
/* Draws the final state (if anything was drawn) and ends the line. */
void progress_end (struct progress *p);
void progress_free (struct progress *p);

/* SIGINT, SIGTERM and SIGHUP set a flag instead of killing the process, so
 * that a long operation stops between two steps and cleans up. */
void interrupt_install (void);
bool interrupted (void);
/* After cleaning up: dies of the signal that interrupted us (so that the
 * shell sees it), with a one-line message naming what was stopped. */
_Noreturn void interrupt_exit (const char *what);

/* ---- json.c ------------------------------------------------------------- */

/* A JSON writer in qemu-img's layout: objects and lists pretty-printed
 * with four-space indentation, members in the order they are added. */
struct json;
struct json *json_new (FILE *fp);
/* Ends the output with a newline and frees the writer. */
void json_free (struct json *j);
void json_begin_object (struct json *j, const char *key);
void json_end_object (struct json *j);
void json_begin_list (struct json *j, const char *key);
void json_end_list (struct json *j);
/* Members: key is NULL inside a list. */
void json_int (struct json *j, const char *key, int64_t v);
void json_uint (struct json *j, const char *key, uint64_t v);
void json_bool (struct json *j, const char *key, bool v);
void json_string (struct json *j, const char *key, const char *v);
/* Writes s as a quoted JSON string. */
void json_quote (FILE *fp, const char *s);

/* ---- copy.c --------------------------------------------------------------- */

/* The granularity at which zeros are found in data (and skipped). */
#define ZERO_BLOCK 4096u

/* The extent of img at offset, no longer than limit - offset (limit is
 * at most the image's size).  -1 with the engine's error set. */
int extent_at (struct image *img, uint64_t offset, uint64_t limit,
               struct image_extent *e);

/* Writes count bytes of buf at offset of dst, leaving out the runs of
 * all-zero ZERO_BLOCK blocks, or with fill_zeros zeroing them (may trim).
 * -1 with the engine's error set. */
int write_runs (struct image *dst, const char *buf, size_t count,
                uint64_t offset, bool fill_zeros);

/* ---- target.c ------------------------------------------------------------- */

/* What convert writes to: an engine image or an NBD export (a URI,
 * written as raw through libnbd).  Thread-safe; errors as the engine's:
 * -1 with the message in image_error (). */
struct target;
/* True if name is an NBD URI (nbd://, nbd+unix://, nbds://...). */
bool target_is_uri (const char *name);
/* A target over an open image, which it then owns (name: for messages). */
struct target *target_from_image (struct image *img, const char *name);
/* Connects to the export uri; NULL with the message printed. */
struct target *target_open_uri (const char *uri);
/* The image under an image target, NULL for an export. */
struct image *target_image (struct target *t);
uint64_t target_size (struct target *t);
int target_pwrite (struct target *t, const void *buf, size_t count,
                   uint64_t offset);
/* flags: IMAGE_MAY_TRIM or 0. */
int target_zero (struct target *t, uint64_t count, uint64_t offset,
                 unsigned flags);
/* Flushes and closes (the image, or the connection); -1 with the message
 * printed if the data may not be durable. */
int target_close (struct target *t);
/* ---- convert-compress.c (convert -c) ------------------------------------ */

/* The cluster size of dst, which must be qcow2 (else one line, -1). */
int compress_cluster_size (struct image *dst, uint64_t *cluster);
/* Makes the range [offset, offset + *length) of an extent (zero or data)
 * handed to a worker whole clusters: offset is cluster-aligned; a zero
 * range shorter than a cluster becomes data. */
void compress_align (uint64_t cluster, uint64_t size, uint64_t offset,
                     uint64_t *length, bool *zero);
/* Writes each cluster of buf that is not all zeros compressed at offset
 * (cluster-aligned); all-zero clusters are skipped, or with fill_zeros
 * zeroed.  -1 with the engine's error set. */
int compress_chunk (struct image *dst, const char *buf, uint64_t offset,
                    uint64_t length, uint64_t cluster, bool fill_zeros);

/* ---- snapshot.c ----------------------------------------------------------- */

/* Internal snapshots, listed as qemu-img lists them (snapshot -l, info). */
struct image;
unsigned snapshot_count (struct image *img);
/* "Snapshot list:" and the table, on stdout. */
void snapshot_print_list (struct image *img);
/* The member "snapshots": a list of objects. */
void snapshot_json_list (struct json *j, struct image *img);

#endif /* COWBD_IMG_H */
