/* SPDX-License-Identifier: BSD-3-Clause */
/* Loads and stores of on-disk and on-wire integers.
 *
 * QED is little-endian, qcow2 and NBD are big-endian.  Every access goes
 * through these helpers, which take unaligned pointers (header fields and
 * wire structs are not naturally aligned).
 */
#ifndef COWBD_BYTE_SWAPPING_H
#define COWBD_BYTE_SWAPPING_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

#define DEFINE_LOAD_STORE(bits, order, conv_in, conv_out)               \
  static inline uint##bits##_t                                          \
  order##bits##_load (const void *p)                                    \
  {                                                                     \
    uint##bits##_t v;                                                   \
    memcpy (&v, p, sizeof v);                                           \
    return conv_in (v);                                                 \
  }                                                                     \
  static inline void                                                    \
  order##bits##_store (void *p, uint##bits##_t v)                       \
  {                                                                     \
    v = conv_out (v);                                                   \
    memcpy (p, &v, sizeof v);                                           \
  }

DEFINE_LOAD_STORE (16, le, le16toh, htole16)
DEFINE_LOAD_STORE (32, le, le32toh, htole32)
DEFINE_LOAD_STORE (64, le, le64toh, htole64)
DEFINE_LOAD_STORE (16, be, be16toh, htobe16)
DEFINE_LOAD_STORE (32, be, be32toh, htobe32)
DEFINE_LOAD_STORE (64, be, be64toh, htobe64)

#undef DEFINE_LOAD_STORE

#endif /* COWBD_BYTE_SWAPPING_H */
