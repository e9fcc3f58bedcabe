/* SPDX-License-Identifier: BSD-3-Clause */
/* Progress (-p) and interruption (Ctrl-C) of long operations.
 *
 * The bar is drawn on stdout only when stdout is a terminal, at most ten
 * times a second, as one line rewritten with '\r':
 *
 *   [##############----------------]  46.9%   480 MiB of 1 GiB   812 MiB/s
 *
 * The rate is the average since the operation started.  Several threads
 * may report progress (convert's workers): a mutex serialises them.
 *
 * Interruption: the handlers of SIGINT, SIGTERM and SIGHUP only record
 * the signal.  Long loops poll interrupted() between two steps (the
 * engine's create polls it through its progress callback), stop, clean up
 * (remove a half-made image, close images cleanly), then call
 * interrupt_exit, which dies of the same signal so that a calling shell
 * sees a process killed by Ctrl-C.
 */
#include <config.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "img.h"
#include "size.h"

#define BAR_WIDTH 30
#define REDRAW_NS 100000000LL   /* 0.1 s */

struct progress {
  bool draw;                    /* stdout is a terminal and -p was given */
  bool drawn;                   /* something is on the line */
  pthread_mutex_t lock;
  int64_t start_ns;             /* when the first update came */
  int64_t last_ns;              /* last redraw */
};

static int64_t
now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

struct progress *
progress_new (bool requested)
{
  struct progress *p = calloc (1, sizeof *p);

  if (p == NULL) {
    perror ("cowbd-img: malloc");
    exit (1);
  }
  p->draw = requested && isatty (STDOUT_FILENO);
  pthread_mutex_init (&p->lock, NULL);
  p->start_ns = -1;
  return p;
}

/* Draws the line.  Called with p->lock held. */
static void
draw (struct progress *p, uint64_t done, uint64_t total, int64_t now)
{
  char bar[BAR_WIDTH + 1], dbuf[32], tbuf[32], rbuf[32];
  double frac = total ? (double) done / (double) total : 1.0;
  double secs = (double) (now - p->start_ns) / 1e9;
  unsigned filled = (unsigned) (frac * BAR_WIDTH);

  memset (bar, '#', filled);
  memset (bar + filled, '-', BAR_WIDTH - filled);
  bar[BAR_WIDTH] = '\0';
  size_format (done, dbuf, sizeof dbuf);
  size_format (total, tbuf, sizeof tbuf);
  if (secs > 0.05)
    size_format ((uint64_t) ((double) done / secs), rbuf, sizeof rbuf);
  else
    strcpy (rbuf, "-");
  printf ("\r[%s] %5.1f%%  %s of %s  %s/s\033[K", bar, frac * 100.0,
          dbuf, tbuf, rbuf);
  fflush (stdout);
  p->drawn = true;
  p->last_ns = now;
}

void
progress_update (struct progress *p, uint64_t done, uint64_t total)
{
  int64_t now;

  if (p == NULL || !p->draw)
    return;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&p->lock);
  now = now_ns ();
  if (p->start_ns < 0)
    p->start_ns = now;
  if (!p->drawn || done >= total || now - p->last_ns >= REDRAW_NS)
    draw (p, done, total, now);
}

void
progress_end (struct progress *p)
{
  if (p == NULL || !p->drawn)
    return;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&p->lock);
  putchar ('\n');
  fflush (stdout);
  p->drawn = false;
}

void
progress_free (struct progress *p)
{
  if (p == NULL)
    return;
  progress_end (p);
  pthread_mutex_destroy (&p->lock);
  free (p);
}

/* ---- interruption ------------------------------------------------------- */

static volatile sig_atomic_t caught_signal;

static void
on_signal (int sig)
{
  caught_signal = sig;
}

void
interrupt_install (void)
{
  static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
  struct sigaction sa;
  size_t i;

  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset (&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    sigaction (sigs[i], &sa, NULL);
}

bool
interrupted (void)
{
  return caught_signal != 0;
}

void
interrupt_exit (const char *what)
{
  int sig = caught_signal ? caught_signal : SIGINT;

  error_msg ("%s: interrupted", what);
  fflush (NULL);
  signal (sig, SIG_DFL);
  raise (sig);
  _exit (128 + sig);
}
