/* SPDX-License-Identifier: BSD-3-Clause */
/* Preloaded into nbdkit after the ASan runtime in sanitizer builds (see
 * nbdkit_env in functions.sh); never linked into anything.
 *
 * nbdkit is not instrumented, so the runtime is preloaded, and preloaded
 * objects are initialised after the program's own libraries.  ASan then
 * initialises lazily, at the first malloc, which libp11-kit's constructor
 * makes inside newlocale() while holding glibc's locale lock.  ASan's
 * initialisation looks up swift_demangle with dlsym; the failed lookup
 * leaves a dlerror message, whose translation takes the same lock again
 * and, releasing it, corrupts it.  nbdkit then hangs in exit (p11-kit's
 * destructor) once any thread has called strerror.  The plain nbdkit file
 * plugin shows it too.  With swift_demangle defined here the lookup
 * succeeds and no message is made.  It demangles nothing.
 */
#include <stddef.h>
#include <stdint.h>

char *swift_demangle (const char *mangled, size_t mangled_len, char *out,
                      size_t *out_len, uint32_t flags);

char *
swift_demangle (const char *mangled, size_t mangled_len, char *out,
                size_t *out_len, uint32_t flags)
{
  return NULL;
}
