/* SPDX-License-Identifier: BSD-3-Clause */
/* Names of protocol numbers for logs and metrics: "NBD_OPT_GO" rather
 * than "option 7".  A number the protocol does not name comes back as
 * NULL, and callers print the number instead.
 */
#include <config.h>

#include <stddef.h>

#include "internal.h"
#include "nbd-protocol.h"

const char *
name_option (uint32_t opt)
{
  switch (opt) {
  case NBD_OPT_EXPORT_NAME: return "NBD_OPT_EXPORT_NAME";
  case NBD_OPT_ABORT: return "NBD_OPT_ABORT";
  case NBD_OPT_LIST: return "NBD_OPT_LIST";
  case NBD_OPT_STARTTLS: return "NBD_OPT_STARTTLS";
  case NBD_OPT_INFO: return "NBD_OPT_INFO";
  case NBD_OPT_GO: return "NBD_OPT_GO";
  case NBD_OPT_STRUCTURED_REPLY: return "NBD_OPT_STRUCTURED_REPLY";
  case NBD_OPT_LIST_META_CONTEXT: return "NBD_OPT_LIST_META_CONTEXT";
  case NBD_OPT_SET_META_CONTEXT: return "NBD_OPT_SET_META_CONTEXT";
  default: return NULL;
  }
}

/* Short lower-case names, as the metrics' "op" label uses them. */
const char *
name_command (uint16_t type)
{
  switch (type) {
  case NBD_CMD_READ: return "read";
  case NBD_CMD_WRITE: return "write";
  case NBD_CMD_DISC: return "disc";
  case NBD_CMD_FLUSH: return "flush";
  case NBD_CMD_TRIM: return "trim";
  case NBD_CMD_CACHE: return "cache";
  case NBD_CMD_WRITE_ZEROES: return "zero";
  case NBD_CMD_BLOCK_STATUS: return "block_status";
  default: return NULL;
  }
}

const char *
name_error (uint32_t err)
{
  switch (err) {
  case NBD_SUCCESS: return "OK";
  case NBD_EPERM: return "EPERM";
  case NBD_EIO: return "EIO";
  case NBD_ENOMEM: return "ENOMEM";
  case NBD_EINVAL: return "EINVAL";
  case NBD_ENOSPC: return "ENOSPC";
  case NBD_EOVERFLOW: return "EOVERFLOW";
  case NBD_ENOTSUP: return "ENOTSUP";
  case NBD_ESHUTDOWN: return "ESHUTDOWN";
  default: return NULL;
  }
}
