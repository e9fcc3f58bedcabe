/* SPDX-License-Identifier: BSD-3-Clause */
/* The NBD wire protocol: constants and packed structs, all big-endian on
 * the wire (load and store fields with byte-swapping.h).  Values are the
 * ones of doc/proto.md in the NBD project; only the fixed newstyle
 * handshake and the structured-reply transmission phase are described.
 *
 *   handshake:  server greeting -> client flags -> options ... -> GO
 *   transmission:  request [+ write payload] -> reply (simple or chunks)
 */
#ifndef COWBD_NBD_PROTOCOL_H
#define COWBD_NBD_PROTOCOL_H

#include <stdint.h>

#define NBD_PACKED __attribute__ ((__packed__))

/* ---- handshake ------------------------------------------------------- */

#define NBD_MAGIC        UINT64_C (0x4e42444d41474943) /* "NBDMAGIC" */
#define NBD_IHAVEOPT     UINT64_C (0x49484156454f5054) /* "IHAVEOPT" */
#define NBD_REP_MAGIC    UINT64_C (0x0003e889045565a9)

/* Server greeting: magic, IHAVEOPT, handshake flags. */
struct nbd_greeting {
  uint64_t magic;
  uint64_t ihaveopt;
  uint16_t flags;
} NBD_PACKED;

/* Handshake flags (server) and client flags. */
#define NBD_FLAG_FIXED_NEWSTYLE    (1 << 0)
#define NBD_FLAG_NO_ZEROES         (1 << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE  (1 << 0)
#define NBD_FLAG_C_NO_ZEROES       (1 << 1)

/* Option request header; the payload (length bytes) follows. */
struct nbd_option {
  uint64_t magic;               /* NBD_IHAVEOPT */
  uint32_t option;
  uint32_t length;
} NBD_PACKED;

#define NBD_OPT_EXPORT_NAME        1
#define NBD_OPT_ABORT              2
#define NBD_OPT_LIST               3
#define NBD_OPT_STARTTLS           5
#define NBD_OPT_INFO               6
#define NBD_OPT_GO                 7
#define NBD_OPT_STRUCTURED_REPLY   8
#define NBD_OPT_LIST_META_CONTEXT  9
#define NBD_OPT_SET_META_CONTEXT   10

/* Option reply header; the payload (length bytes) follows. */
struct nbd_option_reply {
  uint64_t magic;               /* NBD_REP_MAGIC */
  uint32_t option;
  uint32_t reply;
  uint32_t length;
} NBD_PACKED;

#define NBD_REP_ACK             1
#define NBD_REP_SERVER          2
#define NBD_REP_INFO            3
#define NBD_REP_META_CONTEXT    4
#define NBD_REP_ERR(n)          (UINT32_C (0x80000000) + (n))
#define NBD_REP_ERR_UNSUP       NBD_REP_ERR (1)
#define NBD_REP_ERR_POLICY      NBD_REP_ERR (2)
#define NBD_REP_ERR_INVALID     NBD_REP_ERR (3)
#define NBD_REP_ERR_PLATFORM    NBD_REP_ERR (4)
#define NBD_REP_ERR_TLS_REQD    NBD_REP_ERR (5)
#define NBD_REP_ERR_UNKNOWN     NBD_REP_ERR (6)
#define NBD_REP_ERR_SHUTDOWN    NBD_REP_ERR (7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD NBD_REP_ERR (8)
#define NBD_REP_ERR_TOO_BIG     NBD_REP_ERR (9)

/* NBD_REP_INFO payloads. */
#define NBD_INFO_EXPORT         0
#define NBD_INFO_NAME           1
#define NBD_INFO_DESCRIPTION    2
#define NBD_INFO_BLOCK_SIZE     3

struct nbd_info_export {
  uint16_t info;                /* NBD_INFO_EXPORT */
  uint64_t size;
  uint16_t eflags;
} NBD_PACKED;

struct nbd_info_block_size {
  uint16_t info;                /* NBD_INFO_BLOCK_SIZE */
  uint32_t minimum;
  uint32_t preferred;
  uint32_t maximum;
} NBD_PACKED;

/* Reply to NBD_OPT_EXPORT_NAME: size, flags, then 124 zero bytes unless
 * both sides agreed to NO_ZEROES. */
struct nbd_export_name_reply {
  uint64_t size;
  uint16_t eflags;
} NBD_PACKED;
#define NBD_EXPORT_NAME_ZEROES  124

/* Transmission flags (per export). */
#define NBD_FLAG_HAS_FLAGS         (1 << 0)
#define NBD_FLAG_READ_ONLY         (1 << 1)
#define NBD_FLAG_SEND_FLUSH        (1 << 2)
#define NBD_FLAG_SEND_FUA          (1 << 3)
#define NBD_FLAG_ROTATIONAL        (1 << 4)
#define NBD_FLAG_SEND_TRIM         (1 << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1 << 6)
#define NBD_FLAG_SEND_DF           (1 << 7)
#define NBD_FLAG_CAN_MULTI_CONN    (1 << 8)
#define NBD_FLAG_SEND_CACHE        (1 << 10)
#define NBD_FLAG_SEND_FAST_ZERO    (1 << 11)

/* Strings on the wire (names, descriptions, queries) are at most 4096
 * bytes. */
#define NBD_MAX_STRING          4096

/* ---- transmission ---------------------------------------------------- */

#define NBD_REQUEST_MAGIC          UINT32_C (0x25609513)
#define NBD_SIMPLE_REPLY_MAGIC     UINT32_C (0x67446698)
#define NBD_STRUCTURED_REPLY_MAGIC UINT32_C (0x668e33ef)

struct nbd_request {
  uint32_t magic;               /* NBD_REQUEST_MAGIC */
  uint16_t flags;               /* NBD_CMD_FLAG_* */
  uint16_t type;                /* NBD_CMD_* */
  uint64_t handle;              /* the client's cookie, echoed back */
  uint64_t offset;
  uint32_t count;
} NBD_PACKED;

#define NBD_CMD_READ          0
#define NBD_CMD_WRITE         1
#define NBD_CMD_DISC          2
#define NBD_CMD_FLUSH         3
#define NBD_CMD_TRIM          4
#define NBD_CMD_CACHE         5
#define NBD_CMD_WRITE_ZEROES  6
#define NBD_CMD_BLOCK_STATUS  7

#define NBD_CMD_FLAG_FUA       (1 << 0)
#define NBD_CMD_FLAG_NO_HOLE   (1 << 1)
#define NBD_CMD_FLAG_DF        (1 << 2)
#define NBD_CMD_FLAG_REQ_ONE   (1 << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1 << 4)

struct nbd_simple_reply {
  uint32_t magic;               /* NBD_SIMPLE_REPLY_MAGIC */
  uint32_t error;               /* NBD_E* */
  uint64_t handle;
} NBD_PACKED;

/* Header of every structured reply chunk; length payload bytes follow. */
struct nbd_chunk {
  uint32_t magic;               /* NBD_STRUCTURED_REPLY_MAGIC */
  uint16_t flags;               /* NBD_REPLY_FLAG_DONE on the last chunk */
  uint16_t type;                /* NBD_REPLY_TYPE_* */
  uint64_t handle;
  uint32_t length;
} NBD_PACKED;

#define NBD_REPLY_FLAG_DONE          (1 << 0)

#define NBD_REPLY_TYPE_NONE          0
#define NBD_REPLY_TYPE_OFFSET_DATA   1
#define NBD_REPLY_TYPE_OFFSET_HOLE   2
#define NBD_REPLY_TYPE_BLOCK_STATUS  5
#define NBD_REPLY_TYPE_ERROR         ((1 << 15) + 1)
#define NBD_REPLY_TYPE_ERROR_OFFSET  ((1 << 15) + 2)

/* OFFSET_DATA: the chunk header, the offset, then the data. */
struct nbd_chunk_offset_data {
  struct nbd_chunk hdr;
  uint64_t offset;
} NBD_PACKED;

/* OFFSET_HOLE: the chunk header, offset and length of the hole. */
struct nbd_chunk_offset_hole {
  struct nbd_chunk hdr;
  uint64_t offset;
  uint32_t length;
} NBD_PACKED;

/* ERROR: the chunk header, error, message length, message (none sent). */
struct nbd_chunk_error {
  struct nbd_chunk hdr;
  uint32_t error;
  uint16_t msglen;
} NBD_PACKED;

/* BLOCK_STATUS: the chunk header, the context id, then descriptors. */
struct nbd_chunk_block_status {
  struct nbd_chunk hdr;
  uint32_t context_id;
} NBD_PACKED;

struct nbd_block_descriptor {
  uint32_t length;
  uint32_t status;
} NBD_PACKED;

/* base:allocation status bits. */
#define NBD_STATE_HOLE  (1 << 0)
#define NBD_STATE_ZERO  (1 << 1)

/* Error values of the transmission phase. */
#define NBD_SUCCESS     0
#define NBD_EPERM       1
#define NBD_EIO         5
#define NBD_ENOMEM      12
#define NBD_EINVAL      22
#define NBD_ENOSPC      28
#define NBD_EOVERFLOW   75
#define NBD_ENOTSUP     95
#define NBD_ESHUTDOWN   108

#endif /* COWBD_NBD_PROTOCOL_H */
