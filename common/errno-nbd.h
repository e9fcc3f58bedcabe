/* SPDX-License-Identifier: BSD-3-Clause */
/* Which errnos the NBD protocol has a name for: the one list both front
 * ends use.  The server turns the name into the wire value
 * (server/nbd-errno.h, which also narrows ENOTSUP and EOVERFLOW by the
 * request); the plugin hands nbdkit only errnos with a name, because
 * nbdkit sends any other as EINVAL, which would blame the client.
 *
 * The NBD spec ("Error values") names EPERM, EIO, ENOMEM, EINVAL,
 * ENOSPC, EOVERFLOW, ENOTSUP and ESHUTDOWN, and asks for EDQUOT and
 * EFBIG to be sent as ENOSPC; EROFS is sent as EPERM and EOPNOTSUPP as
 * ENOTSUP, as qemu-nbd and nbdkit do.
 */
#ifndef COWBD_ERRNO_NBD_H
#define COWBD_ERRNO_NBD_H

#include <errno.h>
#include <stdbool.h>

/* The errno whose NBD error err is sent as (EROFS: EPERM), or 0 when the
 * protocol has no name for err (0 included). */
static inline int
errno_nbd_name (int err)
{
  switch (err) {
  case EPERM: case EROFS: return EPERM;
  case EIO: return EIO;
  case ENOMEM: return ENOMEM;
  case EINVAL: return EINVAL;
  case ENOSPC: case EDQUOT: case EFBIG: return ENOSPC;
  case ESHUTDOWN: return ESHUTDOWN;
  case EOVERFLOW: return EOVERFLOW;
  case ENOTSUP:
#if EOPNOTSUPP != ENOTSUP
  case EOPNOTSUPP:
#endif
    return ENOTSUP;
  default: return 0;
  }
}

static inline bool
errno_has_nbd_name (int err)
{
  return errno_nbd_name (err) != 0;
}

#endif /* COWBD_ERRNO_NBD_H */
