/* SPDX-License-Identifier: BSD-3-Clause */
/* Fixed-layout on-disk headers as tables of fields (header.c): QED's
 * little-endian header and qcow2's big-endian one are read and written
 * by the same two loops, each format naming where its fields lie.  Not
 * for use outside formats/.
 */
#ifndef COWBD_FORMATS_HEADER_H
#define COWBD_FORMATS_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One field: its byte offset in the header, and the member of the
 * format's header struct that holds it (1, 4 or 8 bytes, as on disk). */
struct hdr_field {
  uint16_t at;
  uint8_t bytes;
  uint16_t member;
};

#define HDR_FIELD(type, name, at) \
  { (at), sizeof ((type *) 0)->name, offsetof (type, name) }

enum hdr_order { HDR_LE, HDR_BE };

/* Reads (decode) or writes (encode) the n fields of f between the
 * header bytes b and the struct s. */
void hdr_decode (const struct hdr_field *f, size_t n, enum hdr_order o,
                 const uint8_t *b, void *s);
void hdr_encode (const struct hdr_field *f, size_t n, enum hdr_order o,
                 const void *s, uint8_t *b);
/* True if the first bytes of a file (len may be short) are magic. */
bool hdr_has_magic (const uint8_t *buf, size_t len, enum hdr_order o,
                    uint32_t magic);

#endif /* COWBD_FORMATS_HEADER_H */
