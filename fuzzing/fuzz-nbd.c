/* SPDX-License-Identifier: BSD-3-Clause */
/* Fuzz target: arbitrary bytes from an NBD client.
 *
 * The server's own code (everything of server/ but main.c) runs in this
 * process with one export, a 1 MiB QED image in a memory file.  Each
 * input is written into one end of a socketpair and the other end becomes
 * a connection (conn_new); the loop runs until the server has closed it,
 * while everything it answers is read and thrown away.  The handshake,
 * the option parsers, request validation, the inline and worker paths and
 * the replies all see hostile bytes; a crash or a sanitizer report is a
 * bug, anything else (refusals, closed connections) is fine.
 *
 * Like fuzz-image.c, built as a libFuzzer target (fuzz-nbd, configure
 * --enable-fuzzing) and as fuzz-nbd-replay, which the test suite runs
 * over corpus-nbd/ (tests/test-fuzz-replay.sh).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../server/internal.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* What main.c provides to the rest of the server. */
struct config cfg = { .threads = 2, .max_inflight = DEFAULT_MAX_INFLIGHT };

void
server_shutdown (int status)
{
}

void
server_conns_gone (void)
{
}

static struct ev_loop *loop;

/* Inputs longer than this are cut: the whole input must fit in the
 * socket's buffer at once. */
#define MAX_INPUT (128u << 10)

/* One export: a QED image in a memory file, made with the engine. */
static void
setup (void)
{
  struct image_create_opts o = { .format = "qed", .size = 1 << 20 };
  static char path[64], arg[80];
  int fd = memfd_create ("fuzz-nbd.qed", 0);

  snprintf (path, sizeof path, "/proc/self/fd/%d", fd);
  if (fd == -1 || image_create (path, &o) == -1) {
    fprintf (stderr, "fuzz-nbd: %s\n", image_error ());
    abort ();
  }
  snprintf (arg, sizeof arg, "vm=%s", path);
  loop = ev_default_loop (EVFLAG_AUTO);
  if (exports_add (arg) == -1 || exports_open () == -1 ||
      workers_start (loop, cfg.threads) == -1)
    abort ();
}

static void
drain_cb (struct ev_loop *l, ev_io *w, int revents)
{
  char buf[65536];

  while (read (w->fd, buf, sizeof buf) > 0)
    ;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  ev_io drain;
  int sv[2], i;

  if (loop == NULL)
    setup ();
  if (size > MAX_INPUT)
    size = MAX_INPUT;
  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
    abort ();
  /* The whole input at once, then the end of the stream. */
  fcntl (sv[1], F_SETFL, O_NONBLOCK);
  if (size && write (sv[1], data, size) != (ssize_t) size)
    abort ();                   /* inputs are kept below the buffer size */
  shutdown (sv[1], SHUT_WR);

  ev_io_init (&drain, drain_cb, sv[1], EV_READ);
  ev_io_start (loop, &drain);
  if (conn_new (loop, sv[0], sv[0], "fuzz") != NULL)
    for (i = 0; i < 100000 && conns_count () > 0; i++)
      ev_run (loop, EVRUN_ONCE);
  ev_io_stop (loop, &drain);
  close (sv[1]);
  return 0;
}

#ifndef FUZZING_WITH_LIBFUZZER
/* fuzz-nbd-replay FILE...: each file through the same function. */
int
main (int argc, char *argv[])
{
  static uint8_t buf[MAX_INPUT];
  int i;

  for (i = 1; i < argc; i++) {
    FILE *fp = fopen (argv[i], "rb");
    size_t n;

    if (fp == NULL) {
      perror (argv[i]);
      return 1;
    }
    n = fread (buf, 1, sizeof buf, fp);
    fclose (fp);
    LLVMFuzzerTestOneInput (buf, n);
  }
  workers_stop ();
  conns_reap ();
  exports_close ();
  printf ("fuzz-nbd-replay: %d inputs\n", argc - 1);
  return 0;
}
#endif
