/* SPDX-License-Identifier: BSD-3-Clause */
/* Engine errno -> the NBD error of a reply: the one place errors are
 * translated (commands.c calls it for every failed engine call).  Header
 * only, so that tests/test-unit-nbd-errno.c checks it without the server.
 *
 * The NBD spec ("Error values") allows EPERM, EIO, ENOMEM, EINVAL,
 * ENOSPC, EOVERFLOW, ENOTSUP and ESHUTDOWN, and narrows two of them by
 * the request:
 *
 *   ENOTSUP    only for WRITE_ZEROES with NBD_CMD_FLAG_FAST_ZERO (the
 *              "cannot do it fast" answer); anywhere else EINVAL
 *   EOVERFLOW  only for READ with NBD_CMD_FLAG_DF (reply too large to
 *              send in one chunk); anywhere else EINVAL
 *
 * DF is accepted only when structured replies were negotiated
 * (transmission.c validates flags first), so "READ with DF" is a
 * structured read.  Which errno has which NBD name (EDQUOT and EFBIG
 * are ENOSPC, EROFS is EPERM...) is common/errno-nbd.h's list, which
 * the plugin uses too; an errno the protocol has no name for is an I/O
 * error (the engine failed; the request itself was valid).
 */
#ifndef COWBD_SERVER_NBD_ERRNO_H
#define COWBD_SERVER_NBD_ERRNO_H

#include <errno.h>
#include <stdint.h>

#include "errno-nbd.h"
#include "nbd-protocol.h"

static inline uint32_t
nbd_errno (int err, uint16_t type, uint16_t flags)
{
  if (err == 0)
    return NBD_SUCCESS;
  switch (errno_nbd_name (err)) {
  case EPERM: return NBD_EPERM;
  case EIO: return NBD_EIO;
  case ENOMEM: return NBD_ENOMEM;
  case EINVAL: return NBD_EINVAL;
  case ENOSPC: return NBD_ENOSPC;
  case ESHUTDOWN: return NBD_ESHUTDOWN;
  case EOVERFLOW:
    return type == NBD_CMD_READ && (flags & NBD_CMD_FLAG_DF) ?
      NBD_EOVERFLOW : NBD_EINVAL;
  case ENOTSUP:
    return type == NBD_CMD_WRITE_ZEROES && (flags & NBD_CMD_FLAG_FAST_ZERO) ?
      NBD_ENOTSUP : NBD_EINVAL;
  default: return NBD_EIO;
  }
}

#endif /* COWBD_SERVER_NBD_ERRNO_H */
