/* SPDX-License-Identifier: BSD-3-Clause */
/* Polling before sleeping.  After the loop has read requests it keeps
 * polling its descriptors without blocking (an ev_idle watcher makes
 * epoll_wait return at once) for SPIN_SECONDS more before it lets the
 * loop sleep again.
 *
 * Why: a burst of small requests (4 KiB reads answered on the loop)
 * arrives a few at a time; a loop that sleeps as soon as the socket is
 * empty is woken again microseconds later.  On a virtual machine every
 * such sleep halts the vCPU and every wake-up is an interrupt through
 * the hypervisor: W11s (4 KiB reads at qd32 of a thin image) measured
 * 24,000 context switches a second for cowbd against 500 for qemu-nbd,
 * whose loop never found itself idle, and the wake-ups, not the engine,
 * were most of cowbd's time (pvm_irq_enable, 37% of its profile).
 * QEMU's event loops poll the same way (poll-max-ns) before blocking.
 * An idle server still sleeps: the spin ends SPIN_SECONDS after the
 * last request read.
 *
 * A spin starts only when one read brought several requests: the client
 * keeps many in flight, so more arrive as replies go out.  One request a
 * read is a client waiting for each reply (queue depth 1): polling would
 * find nothing and take the CPU that the worker and the client need
 * (W5d, 4 KiB write + flush at depth 1 on disk, ran at 0.84x without this
 * condition on 2 cores).  A running spin is extended by any read.  Loop
 * thread only.
 */
#include <config.h>

#include "internal.h"

#define SPIN_SECONDS 50e-6

static ev_idle spin;
static ev_tstamp busy_at;       /* when requests were last read */

static void
spin_cb (struct ev_loop *loop, ev_idle *w, int revents)
{
  if (ev_now (loop) - busy_at > SPIN_SECONDS)
    ev_idle_stop (loop, w);
}

void
spin_busy (struct ev_loop *loop, unsigned long requests)
{
  if (ev_is_active (&spin))
    busy_at = ev_now (loop);
  else if (requests >= 2) {
    busy_at = ev_now (loop);
    ev_idle_init (&spin, spin_cb);
    ev_idle_start (loop, &spin);
  }
}
