/* SPDX-License-Identifier: BSD-3-Clause */
/* libnbd, loaded when first needed rather than linked: by the first
 * remote base (source-nbd.c) or cowbd-img's first NBD target
 * (tools/target.c).  A process with local images only then never maps
 * libnbd and what it pulls in (GnuTLS, libxml2, ICU, libstdc++): about
 * 1.8 MiB of resident pages in a server at rest, and 9 ms at every
 * start of cowbd-img on a 2-core VM (an empty program linked with -lnbd
 * started in 13.2 ms against 3.8 ms).  Every call goes through nbdlib,
 * by the names libnbd.h declares.
 */
#ifndef COWBD_LIBNBD_LOAD_H
#define COWBD_LIBNBD_LOAD_H

#include <libnbd.h>

#define LIBNBD_SONAME "libnbd.so.0"
#define LIBNBD_CALLS(X)                                                   \
  X (nbd_add_meta_context) X (nbd_aio_block_status)                       \
  X (nbd_aio_command_completed) X (nbd_aio_connect_uri)                   \
  X (nbd_aio_disconnect) X (nbd_aio_is_connecting) X (nbd_aio_is_ready)   \
  X (nbd_aio_pread) X (nbd_can_meta_context) X (nbd_can_multi_conn)       \
  X (nbd_can_zero) X (nbd_close) X (nbd_connect_uri) X (nbd_create)       \
  X (nbd_flush) X (nbd_get_block_size) X (nbd_get_errno)                  \
  X (nbd_get_error) X (nbd_get_size) X (nbd_is_read_only) X (nbd_poll)    \
  X (nbd_pwrite) X (nbd_set_uri_allow_local_file) X (nbd_shutdown)        \
  X (nbd_zero)

#define LIBNBD_POINTER(f) __typeof__ (&f) f;
struct libnbd_calls { LIBNBD_CALLS (LIBNBD_POINTER) };
#undef LIBNBD_POINTER

extern struct libnbd_calls nbdlib;

/* Loads libnbd once per process: 0 when every call in nbdlib is filled
 * in, else -1 with the error set: "URI: cannot load libnbd.so.0 for
 * PURPOSE: why" (dlerror's words or the missing symbol). */
extern int libnbd_load (const char *uri, const char *purpose);

#endif /* COWBD_LIBNBD_LOAD_H */
