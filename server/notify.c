/* SPDX-License-Identifier: BSD-3-Clause */
/* Readiness for service managers (sd_notify, Type=notify units):
 *
 *   READY=1   once every listening socket accepts (and the images are
 *             open), with a STATUS= line
 *   STATUS=   "N exports, M connections", again when a number changed,
 *             at most once every STATUS_INTERVAL seconds
 *   STOPPING=1  when the graceful shutdown starts
 *
 * Nothing is sent when NOTIFY_SOCKET is unset, and only then is
 * libsystemd loaded (dlopen): with what it pulls in (libgcrypt, liblz4,
 * liblzma...) it is about 0.8 MiB of resident pages a server run by hand
 * has no use for.  Loop thread.
 */
#include <config.h>

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>

#define LIBSYSTEMD_SONAME "libsystemd.so.0"
#define STATUS_INTERVAL 1.

static struct ev_loop *loop;
static ev_timer status_timer;
static bool ready, stopping;
static size_t last_exports, last_conns;
static __typeof__ (&sd_notify) notify;

static void
send_status (const char *extra)
{
  char msg[128];

  last_exports = exports_count ();
  last_conns = conns_count ();
  snprintf (msg, sizeof msg, "%sSTATUS=%zu exports, %zu connections",
            extra, last_exports, last_conns);
  notify (0, msg);
}

/* Whether a service manager listens, with notify set to send to it. */
static bool
manager_listens (void)
{
  void *dl;

  if (getenv ("NOTIFY_SOCKET") == NULL)
    return false;
  dl = dlopen (LIBSYSTEMD_SONAME, RTLD_NOW | RTLD_LOCAL);
  if (dl == NULL ||
      (notify = (__typeof__ (notify)) dlsym (dl, "sd_notify")) == NULL) {
    log_error ("NOTIFY_SOCKET is set but %s cannot be loaded: %s",
               LIBSYSTEMD_SONAME, dlerror ());
    return false;
  }
  return true;
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
  if (!manager_listens ())
    return;
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
  notify (0, "STOPPING=1\nSTATUS=shutting down");
}

#else

void notify_ready (struct ev_loop *l) { }
void notify_changed (void) { }
void notify_stopping (void) { }

#endif
