/* SPDX-License-Identifier: BSD-3-Clause */
/* Hostile and broken qcow2 images: each made by qemu-img, then patched by
 * a few lines of python, then opened (and, when the open succeeds, read
 * whole and written where the fault is) through the engine.  Each must
 * fail with one line that names the file and the fault, with the errno a
 * front end passes on, never crash (or trip a sanitizer), and leave the
 * file exactly as it was (sha256 before and after).
 *
 * When cowbd-img is built, each image also goes through `cowbd-img info`
 * and `cowbd-img check`: where the engine refuses a read-only open, both
 * exit 1 with one line naming the file and the fault; where it opens,
 * info exits 0 and check exits 2 (corruptions found) for faults in the
 * tables, 0 for the others (the check reads no data, and the corrupt bit
 * alone is no corruption) - as qemu-img check does, except on a
 * compressed descriptor past the end of the file, which qemu-img check
 * 7.2 does not see (only its reads fail).  The file stays unchanged.
 */
#include <config.h>

#include "engine-test.h"

/* Helpers for the patches: struct-based access to the file f, and the
 * geometry of a qemu-made image. */
static const char *prelude =
  "import struct, sys\n"
  "f = open(sys.argv[1], 'r+b')\n"
  "def rd(o, n):\n f.seek(o); return f.read(n)\n"
  "def u64(o): return struct.unpack('>Q', rd(o, 8))[0]\n"
  "def u32(o): return struct.unpack('>I', rd(o, 4))[0]\n"
  "def w64(o, v):\n f.seek(o); f.write(struct.pack('>Q', v))\n"
  "def w32(o, v):\n f.seek(o); f.write(struct.pack('>I', v))\n"
  "cs = 1 << u32(20)\n"
  "l1 = u64(40)\n"
  "def l2e(c): return (u64(l1 + 8 * (c // (cs // 8))) & 0x00fffffffffffe00)"
  " + 8 * (c % (cs // 8))\n"
  "f.seek(0, 2); size = f.tell()\n";

enum stage { AT_OPEN, AT_READ, AT_WRITE };

static bool have_cowbd_img;

struct bad {
  const char *name;
  const char *make;             /* shell making i.qcow2 (in the test dir) */
  const char *patch;            /* python, after the prelude */
  bool readonly;                /* open read-only (else read-write) */
  enum stage stage;
  uint64_t where;               /* AT_WRITE: the offset written */
  int errnum;
  const char *says;             /* part of the message */
  int check_rc;                 /* cowbd-img check's exit, if it opens */
};

#define PLAIN "qemu-img create -q -f qcow2 i.qcow2 4M && qemu-io -f qcow2 " \
              "-c 'write -P 0x42 0 256K' i.qcow2"

static const struct bad cases[] = {
  { "refcount table past EOF", PLAIN, "w64(48, 1 << 40)\n",
    true, AT_OPEN, 0, EINVAL, "refcount table at 0x10000000000" },
  { "refcount table too large", PLAIN, "w32(56, 0xffffffff)\n",
    true, AT_OPEN, 0, EINVAL, "refcount table of 4294967295 clusters" },
  { "l1_size overflow", PLAIN, "w32(36, 0xffffffff)\n",
    true, AT_OPEN, 0, EINVAL, "l1_size 4294967295 is too large" },
  { "l1_size too small for the size", PLAIN, "w64(24, 1 << 50)\n",
    true, AT_OPEN, 0, EINVAL, "too small for size" },
  { "L1 table past EOF", PLAIN, "w64(40, 1 << 45)\n",
    true, AT_OPEN, 0, EINVAL, "L1 table at 0x200000000000" },
  { "L1 entry past EOF", PLAIN, "w64(l1, (1 << 40) | (1 << 63))\n",
    true, AT_READ, 0, EIO, "L2 table lies past end of file", 2 },
  { "L2 entry with reserved bits set", PLAIN,
    "w64(l2e(0), u64(l2e(0)) | 0x100)\n",
    true, AT_READ, 0, EIO, "reserved bits are set", 2 },
  { "L2 entry with reserved bits set, written", PLAIN,
    "w64(l2e(1), u64(l2e(1)) | (1 << 60))\n",
    false, AT_WRITE, 65536 + 100, EIO, "reserved bits are set", 2 },
  { "compressed cluster past EOF",
    "qemu-img create -q -f raw r.raw 1M && qemu-io -f raw "
    "-c 'write -P 0x42 0 1M' r.raw && qemu-img convert -c -O qcow2 "
    "r.raw i.qcow2",
    "e = u64(l2e(0))\n"
    "assert e & (1 << 62)\n"
    "shift = 62 - (u32(20) - 8)\n"
    "w64(l2e(0), (e & ~((1 << shift) - 1)) | (size + 4096))\n",
    true, AT_READ, 0, EIO, "compressed data lies in the header or past end",
    2 },
  { "compressed cluster that does not inflate",
    "qemu-img create -q -f raw r.raw 1M && qemu-io -f raw "
    "-c 'write -P 0x42 0 1M' r.raw && qemu-img convert -c -O qcow2 "
    "r.raw i.qcow2",
    "e = u64(l2e(0))\n"
    "o = e & ((1 << (62 - (u32(20) - 8))) - 1)\n"
    "f.seek(o); f.write(b'\\xff' * 16)\n",
    true, AT_READ, 0, EIO, "does not decompress to one cluster" },
  { "garbage snapshot table",
    PLAIN " && qemu-img snapshot -c s1 i.qcow2",
    "so = u64(64)\n"
    "f.seek(so); f.write(bytes(range(7, 250)))\n",
    true, AT_OPEN, 0, EINVAL, "snapshot table: entry 0" },
  { "too many snapshots", PLAIN " && qemu-img snapshot -c s1 i.qcow2",
    "w32(60, 100000)\n",
    true, AT_OPEN, 0, EINVAL, "100000 snapshots" },
  { "snapshot L1 table past EOF", PLAIN " && qemu-img snapshot -c s1 i.qcow2",
    "w64(u64(64), 1 << 44)\n",
    true, AT_OPEN, 0, EINVAL, "its L1 table is misaligned or lies past end" },
  { "header extension length overflows", PLAIN,
    "assert u32(112) == 0x6803f857\n"
    "w32(116, 0xfffffff0)\n",
    true, AT_OPEN, 0, EINVAL, "header extension 0x6803f857 at offset 112" },
  { "unknown incompatible feature bit", PLAIN,
    "w64(72, u64(72) | (1 << 20))\n",
    true, AT_OPEN, 0, ENOTSUP, "unsupported incompatible feature bit 20" },
  { "unknown incompatible feature named by the table", PLAIN,
    /* The table's entry for bit 4 now names bit 9, set in the header. */
    "o = 120 + 4 * 48\n"
    "assert rd(o, 2) == b'\\x00\\x04'\n"
    "f.seek(o + 1); f.write(b'\\x09')\n"
    "w64(72, u64(72) | (1 << 9))\n",
    true, AT_OPEN, 0, ENOTSUP, "'extended L2 entries' (bit 9)" },
  { "corrupt bit on a read-write open", PLAIN, "w64(72, u64(72) | 2)\n",
    false, AT_OPEN, 0, EROFS, "marked corrupt" },
  { "external data file", PLAIN, "w64(72, u64(72) | 4)\n",
    true, AT_OPEN, 0, ENOTSUP, "external data file" },
  { "encryption", PLAIN, "w32(32, 1)\n",
    true, AT_OPEN, 0, ENOTSUP, "encrypted images are not supported" },
  { "cluster_bits out of range", PLAIN, "w32(20, 31)\n",
    true, AT_OPEN, 0, EINVAL, "cluster_bits 31" },
  { "refcount_order out of range", PLAIN, "w32(96, 7)\n",
    true, AT_OPEN, 0, EINVAL, "refcount_order 7" },
  { "header_length not a multiple of 8", PLAIN, "w32(100, 105)\n",
    true, AT_OPEN, 0, EINVAL, "header_length 105" },
  { "backing file name too long",
    "qemu-img create -q -f raw b.raw 4M && qemu-img create -q -f qcow2 "
    "-b b.raw -F raw i.qcow2",
    "w32(16, 5000)\n",
    true, AT_OPEN, 0, EINVAL, "backing file name (5000 bytes" },
  { "unsupported version", PLAIN, "w32(4, 4)\n",
    true, AT_OPEN, 0, ENOTSUP, "unsupported qcow2 version 4" },
  { "truncated header", PLAIN, "f.truncate(50)\n",
    true, AT_OPEN, 0, EINVAL, "truncated header" },
  { "refcount block past EOF, read-write", PLAIN,
    "rt = u64(48)\n"
    "w64(rt, 1 << 41)\n",
    false, AT_OPEN, 0, EINVAL,
    "refcount table entry 0 (0x20000000000) is invalid", 2 },
};

static void
sha256 (char *out, size_t len)
{
  char cmd[4096];
  FILE *fp;

  snprintf (cmd, sizeof cmd, "sha256sum < '%s'", path ("i.qcow2"));
  fp = popen (cmd, "r");
  if (fp == NULL || fgets (out, (int) len, fp) == NULL)
    die ("sha256sum");
  pclose (fp);
}

/* The failure must be one line naming the file and the fault. */
static void
expect_error (const struct bad *b, const char *when)
{
  const char *msg = image_error ();

  if (image_errno () != b->errnum || strchr (msg, '\n') ||
      strstr (msg, path ("i.qcow2")) == NULL || strstr (msg, b->says) == NULL)
    die ("%s: %s: errno %d, message '%s'; expected errno %d and a line "
         "naming the file and '%s'", b->name, when, image_errno (), msg,
         b->errnum, b->says);
  printf ("  %-48s %s\n", b->name, msg + strlen (path ("i.qcow2")) + 2);
}

/* Reads the whole image; returns -1 at the first failure. */
static int
read_all (struct image *img)
{
  uint64_t size = image_size (img), off;
  static uint8_t buf[1 << 20];

  for (off = 0; off < size; off += sizeof buf)
    if (image_pread (img, buf, MIN ((uint64_t) sizeof buf, size - off),
                     off) == -1)
      return -1;
  return 0;
}

/* Writes a little where the fault is. */
static int
write_some (struct image *img, uint64_t where)
{
  uint8_t buf[512] = { 1 };

  return image_pwrite (img, buf, sizeof buf, where, 0);
}

static void
write_line (const char *file, const char *line)
{
  FILE *fp = fopen (file, "w");

  if (fp == NULL || fprintf (fp, "%s\n", line) < 0 || fclose (fp) != 0)
    die ("writing %s", file);
}

/* cowbd-img info and check on the image. */
static void
through_cowbd_img (const struct bad *b)
{
  struct image_open_opts o = { .flags = IMAGE_OPEN_READONLY };
  struct image *img = image_open (path ("i.qcow2"), &o);
  const char *f = path ("i.qcow2");
  int info, check, qemu;

  info = run ("cowbd-img info '%s' >/dev/null 2>'%s'", f, path ("info.err"));
  check = run ("cowbd-img check '%s' >/dev/null 2>'%s'", f,
               path ("check.err"));
  if (img == NULL) {
    if (info != 1 || check != 1)
      die ("%s: cowbd-img info/check exit %d/%d, expected 1/1", b->name,
           info, check);
    write_line (path ("says"), b->says);
    write_line (path ("file"), f);
    if (run ("cd '%s' && test $(wc -l < info.err) = 1 && "
             "grep -q -F -f says info.err && grep -q -F -f file info.err && "
             "test $(wc -l < check.err) = 1 && grep -q -F -f says check.err",
             test_dir) != 0)
      die ("%s: cowbd-img info/check did not say what and where in one "
           "line", b->name);
    return;
  }
  CHECK (image_close (img));
  qemu = run ("qemu-img check '%s' >/dev/null 2>&1", f);
  if (info != 0 || check != b->check_rc)
    die ("%s: cowbd-img info exits %d (expected 0), check %d (expected %d; "
         "qemu-img check: %d)", b->name, info, check, b->check_rc, qemu);
}

static void
one_case (const struct bad *b)
{
  struct image_open_opts o = {
    .flags = b->readonly ? IMAGE_OPEN_READONLY : 0,
  };
  char before[256], after[256];
  struct image *img;
  FILE *fp;
  int r = 0;

  run ("rm -f '%s'/*", test_dir);
  if (run ("cd '%s' && (%s) >/dev/null", test_dir, b->make) != 0)
    die ("%s: making the image", b->name);
  fp = fopen (path ("patch.py"), "w");
  if (fp == NULL || fputs (prelude, fp) == EOF || fputs (b->patch, fp) == EOF
      || fclose (fp) != 0)
    die ("writing patch.py");
  if (run ("/usr/bin/python3 '%s' '%s'", path ("patch.py"),
           path ("i.qcow2")) != 0)
    die ("%s: patching the image", b->name);
  sha256 (before, sizeof before);

  img = image_open (path ("i.qcow2"), &o);
  if (b->stage == AT_OPEN) {
    if (img != NULL)
      die ("%s: the open succeeded", b->name);
    expect_error (b, "open");
  }
  else {
    if (img == NULL)
      die ("%s: open: %s", b->name, image_error ());
    r = b->stage == AT_READ ? read_all (img) : write_some (img, b->where);
    if (r != -1)
      die ("%s: the %s succeeded", b->name,
           b->stage == AT_READ ? "read" : "write");
    expect_error (b, b->stage == AT_READ ? "read" : "write");
    CHECK (image_close (img));
  }
  if (have_cowbd_img)
    through_cowbd_img (b);
  sha256 (after, sizeof after);
  if (strcmp (before, after) != 0)
    die ("%s: the file changed", b->name);
}

int
main (int argc, char *argv[])
{
  size_t i;

  test_init (argv[0]);
  have_cowbd_img = run ("cowbd-img --version >/dev/null 2>&1") == 0;
  if (!have_cowbd_img)
    printf ("(no cowbd-img: its info and check are not tried)\n");
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
    one_case (&cases[i]);
  test_cleanup ();
  printf ("qcow2 bad input: ok (%zu cases)\n", i);
  return 0;
}
