/* SPDX-License-Identifier: BSD-3-Clause */
/* libnbd loaded with dlopen: libnbd-load.h. */
#include <config.h>

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>

#include "internal.h"
#include "libnbd-load.h"

struct libnbd_calls nbdlib;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static const char *why = "not loaded yet";
/* dlerror's message lives in the loading thread's buffer, which its next
 * dl call or its exit frees; why outlives both. */
static char dl_why[256];

static void
load (void)
{
  void *dl = dlopen (LIBNBD_SONAME, RTLD_NOW | RTLD_LOCAL);

  if (dl == NULL) {
    snprintf (dl_why, sizeof dl_why, "%s", dlerror ());
    why = dl_why;
    return;
  }
#define LIBNBD_LOOKUP(f)                                                  \
  if ((nbdlib.f = (__typeof__ (nbdlib.f)) dlsym (dl, #f)) == NULL) {      \
    why = "a symbol is missing: " #f;                                     \
    return;                                                               \
  }
  LIBNBD_CALLS (LIBNBD_LOOKUP)
#undef LIBNBD_LOOKUP
  why = NULL;
}

int
libnbd_load (const char *uri, const char *purpose)
{
  pthread_once (&once, load);
  if (why)
    return error_set (ENOTSUP, "%s: cannot load %s for %s: %s", uri,
                      LIBNBD_SONAME, purpose, why);
  return 0;
}
