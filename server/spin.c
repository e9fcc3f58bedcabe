/* SPDX-License-Identifier: BSD-3-Clause */
/* Polling before sleeping.  After the loop has read requests it keeps
 * polling its descriptors without blocking (an ev_idle watcher makes
 * epoll_wait return at once) for a while before it lets the loop sleep
 * again.
 *
 * Why: a burst of small requests (4 KiB reads answered on the loop)
 * arrives one or a few at a time; a loop that sleeps as soon as the
 * socket is empty is woken again microseconds later.  On a virtual
 * machine every such sleep halts the vCPU and every wake-up is an
 * interrupt through the hypervisor, paid by the client's send as much
 * as by us: W11s (4 KiB reads at qd32 of a thin image) measured 24,000
 * context switches a second for cowbd against 500 for qemu-nbd, and the
 * wake-ups, not the engine, were most of cowbd's time (pvm_irq_enable,
 * 37% of its profile).
 *
 * How long: the window adapts, as QEMU's poll-max-ns does.  It is the
 * time the loop polls after the last request read:
 *
 *   loop slept, next request came   gap <= SPIN_MAX   window doubles
 *   soon after the last one                           (from SPIN_MIN)
 *   loop slept, next request came   gap >  SPIN_MAX   window halves
 *   late                                              (below SPIN_MIN: 0)
 *   a request came while polling                      window kept
 *
 * A client with many requests in flight sends the next one within
 * microseconds of a reply, so the window grows until the loop stops
 * sleeping.  A client at queue depth 1 whose requests take long (4 KiB
 * write + flush on disk, W5d) has gaps of milliseconds: the window
 * stays at or near 0, and polling takes no CPU from the worker and the
 * client (W5d ran at 0.84x on 2 cores with a fixed 50 us window).  An
 * idle server reads nothing, so it sleeps.
 *
 * Polling takes a core: it pays only while the loop answers the
 * requests itself, not while a worker has one and wants a core (W1,
 * 1 MiB reads at depth 8, ran at 0.85x with the loop polling beside the
 * workers; W5d, whose flushes go to a worker, at 0.94x over 5
 * interleaved repeats when the loop polled beside one worker, 1.03x
 * when it polls beside none).  Loop thread only.
 */
#include <config.h>

#include "internal.h"
#include "minmax.h"

#define SPIN_MIN 4e-6
#define SPIN_MAX 100e-6
#define SPIN_WORKERS_MAX 0      /* requests out at workers */

static ev_idle spin;
static ev_tstamp busy_at;       /* when requests were last read */
static ev_tstamp window;        /* how long to poll after busy_at */

static void
spin_cb (struct ev_loop *loop, ev_idle *w, int revents)
{
  if (ev_now (loop) - busy_at > window ||
      workers_out () > SPIN_WORKERS_MAX)
    ev_idle_stop (loop, w);
}

/* The loop slept before requests came gap seconds after the last ones:
 * a longer window would have caught them, or none would have. */
static void
spin_adapt (ev_tstamp gap)
{
  if (gap <= SPIN_MAX)
    window = MIN (MAX (window * 2, SPIN_MIN), SPIN_MAX);
  else {
    window /= 2;
    if (window < SPIN_MIN)
      window = 0;
  }
}

void
spin_busy (struct ev_loop *loop, unsigned long requests)
{
  ev_tstamp now = ev_now (loop);

  if (requests == 0)
    return;
  if (!ev_is_active (&spin)) {
    spin_adapt (now - busy_at);
    if (window > 0 && workers_out () <= SPIN_WORKERS_MAX) {
      ev_idle_init (&spin, spin_cb);
      ev_idle_start (loop, &spin);
    }
  }
  busy_at = now;
}
