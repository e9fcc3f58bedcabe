/* SPDX-License-Identifier: BSD-3-Clause */
/* Readiness for service managers (sd_notify, Type=notify units):
 *
 *   READY=1   once every listening socket accepts (and the images are
 *             open), with a STATUS= line
 *   STATUS=   "N exports, M connections", again when a number changed,
 *             at most once every STATUS_INTERVAL seconds
 *   STOPPING=1  when the graceful shutdown starts
 *
 * libsystemd does nothing when NOTIFY_SOCKET is unset.  Loop thread.
 */
#include <config.h>

#include <stdio.h>

#include "internal.h"

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>

#define STATUS_INTERVAL 1.

static struct ev_loop *loop;
static ev_timer status_timer;
static bool ready, stopping;
static size_t last_exports, last_conns;

static void
send_status (const char *extra)
{
  last_exports = exports_count ();
  last_conns = conns_count ();
  sd_notifyf (0, "%sSTATUS=%zu exports, %zu connections", extra,
              last_exports, last_conns);
}

static void
status_cb (struct ev_loop *l, ev_timer *w, int revents)
{
  if (!stopping && (last_exports != exports_count () ||
                    last_conns != conns_count ()))
    send_status ("");
}

void
notify_ready (struct ev_loop *l)
{
  loop = l;
  ready = true;
  send_status ("READY=1\n");
  ev_timer_init (&status_timer, status_cb, STATUS_INTERVAL, 0.);
}

void
notify_changed (void)
{
  if (ready && !stopping && !ev_is_active (&status_timer))
    ev_timer_start (loop, &status_timer);
}

void
notify_stopping (void)
{
  if (!ready || stopping)
    return;
  stopping = true;
  ev_timer_stop (loop, &status_timer);
  sd_notify (0, "STOPPING=1\nSTATUS=shutting down");
}

#else

void notify_ready (struct ev_loop *l) { }
void notify_changed (void) { }
void notify_stopping (void) { }

#endif
