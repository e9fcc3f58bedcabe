/* SPDX-License-Identifier: BSD-3-Clause */
/* Creating qcow2 images and changing their header, checked with qemu-img:
 *
 *  - qcow2 is image_create's default format; the defaults are compat=1.1,
 *    lazy_refcounts=on, cluster_size=64K, refcount_bits=16 (qemu-img info
 *    and image_get_info agree on every field);
 *  - every option lands in the header; bad combinations are refused with
 *    one line and leave no file behind;
 *  - an overlay of a 1 TiB image is created in constant time and space;
 *  - preallocation metadata, falloc and full: every cluster mapped (qemu-img
 *    map), blocks reserved (falloc, full), progress reported for falloc
 *    and full, and a cancel removes the file;
 *  - set_backing rewrites the backing name and format and keeps an unknown
 *    header extension; make_empty drops every allocation so that all of
 *    the image reads from its backing file again, and gives the space
 *    back.
 * Every image passes qemu-img check.
 */
#include <config.h>

#include <fcntl.h>

#include "engine-test.h"

static uint64_t
disk_usage (const char *file)
{
  struct stat st;

  if (stat (file, &st) == -1)
    die ("stat %s", file);
  return (uint64_t) st.st_blocks * 512;
}

/* qemu-img info --output=json of file must contain each needle. */
static void
info_says (const char *file, const char *const *needles)
{
  for (; *needles; needles++)
    if (run ("qemu-img info --output=json '%s' | tr -d ' \\n' | "
             "grep -q -F '%s'", file, *needles) != 0) {
      run ("qemu-img info --output=json '%s' >&2", file);
      die ("%s: qemu-img info does not say %s", file, *needles);
    }
}

static void
defaults (void)
{
  struct image_create_opts o = { .size = 1 << 30 };
  const char *f = path ("default.qcow2");
  struct image_info info;
  const struct image_info_qcow2 *q;
  struct image *img;

  if (image_create (f, &o) == -1)
    die ("create with defaults: %s", image_error ());
  info_says (f, (const char *const[]) {
      "\"format\":\"qcow2\"", "\"cluster-size\":65536",
      "\"compat\":\"1.1\"", "\"lazy-refcounts\":true",
      "\"refcount-bits\":16", "\"virtual-size\":1073741824",
      "\"compression-type\":\"zlib\"", NULL });
  img = open_image (f, IMAGE_OPEN_READONLY, 0);
  image_get_info (img, &info);
  q = &info.specific.qcow2;
  if (strcmp (info.format, "qcow2") || info.cluster_size != 65536 ||
      info.specific.kind != IMAGE_INFO_QCOW2 ||
      strcmp (q->compat, "1.1") || !q->lazy_refcounts ||
      q->refcount_bits != 16 || q->corrupt || info.dirty ||
      q->nb_snapshots || strcmp (q->compression_type, "zlib") ||
      q->extended_l2 || q->data_file || info.virtual_size != 1 << 30)
    die ("image_get_info of a default image is wrong");
  CHECK (image_close (img));
  qemu_img_check_clean (f);
}

static void
options (void)
{
  const char *f = path ("opts.qcow2");

  create_qcow2 (f, 100 << 20, NULL, 4096, 0, "1.1", 64);
  info_says (f, (const char *const[]) {
      "\"cluster-size\":4096", "\"lazy-refcounts\":false",
      "\"refcount-bits\":64", NULL });
  qemu_img_check_clean (f);
  create_qcow2 (f, 100 << 20, NULL, 512, -1, "0.10", 0);
  info_says (f, (const char *const[]) {
      "\"cluster-size\":512", "\"compat\":\"0.10\"", NULL });
  qemu_img_check_clean (f);
  /* Sizes are kept in whole sectors, as qemu-img does. */
  create_qcow2 (f, 1000, NULL, 0, -1, NULL, 0);
  info_says (f, (const char *const[]) { "\"virtual-size\":1024", NULL });
}

static void
refused (const char *what, struct image_create_opts o)
{
  const char *f = path ("refused.qcow2");

  unlink (f);
  o.format = "qcow2";
  if (o.size == 0)
    o.size = 1 << 20;
  if (image_create (f, &o) != -1 || image_errno () != EINVAL ||
      strchr (image_error (), '\n') || strstr (image_error (), f) == NULL)
    die ("%s: expected a one-line EINVAL naming the file, got %s", what,
         image_error ());
  if (access (f, F_OK) == 0)
    die ("%s: a refused create left a file", what);
}

static void
bad_options (void)
{
  refused ("cluster_size 1000", (struct image_create_opts) {
      .cluster_size = 1000 });
  refused ("cluster_size 4M", (struct image_create_opts) {
      .cluster_size = 4 << 20 });
  refused ("refcount_bits 3", (struct image_create_opts) {
      IMAGE_OPTIONS ({ .name = "refcount_bits", .number = 3 }) });
  refused ("refcount_bits 128", (struct image_create_opts) {
      IMAGE_OPTIONS ({ .name = "refcount_bits", .number = 128 }) });
  refused ("compat 2.0", (struct image_create_opts) {
      IMAGE_OPTIONS ({ .name = "compat", .string = "2.0" }) });
  refused ("lazy refcounts on version 2", (struct image_create_opts) {
      IMAGE_OPTIONS ({ .name = "compat", .string = "0.10" },
                     { .name = "lazy_refcounts", .number = 1 }) });
  refused ("refcount_bits 8 on version 2", (struct image_create_opts) {
      IMAGE_OPTIONS ({ .name = "compat", .string = "0.10" },
                     { .name = "refcount_bits", .number = 8 }) });
  refused ("table_size", (struct image_create_opts) {
      IMAGE_OPTIONS ({ .name = "table_size", .number = 4 }) });
  refused ("too large for 512-byte clusters", (struct image_create_opts) {
      .size = 1ULL << 50, .cluster_size = 512 });
  refused ("preallocation with a backing file", (struct image_create_opts) {
      .backing_file = "default.qcow2", .prealloc = IMAGE_PREALLOC_METADATA });
}

static void
constant_time_overlay (void)
{
  const char *base = path ("huge.qcow2"), *ov = path ("huge-ov.qcow2");
  struct image *img;

  create_qcow2 (base, 1ULL << 40, NULL, 0, -1, NULL, 0);
  create_qcow2 (ov, 0, "huge.qcow2", 0, -1, NULL, 0);
  if (file_size (ov) > 1 << 20)
    die ("an overlay of 1 TiB takes %" PRIu64 " bytes", file_size (ov));
  info_says (ov, (const char *const[]) {
      "\"virtual-size\":1099511627776", "\"backing-filename\":\"huge.qcow2\"",
      "\"backing-filename-format\":\"qcow2\"", NULL });
  img = open_image (ov, 0, 0);
  if (image_size (img) != 1ULL << 40 || image_backing (img) == NULL)
    die ("the overlay does not open with its backing file");
  CHECK (image_close (img));
  qemu_img_check_clean (ov);
}

struct progress {
  unsigned calls;
  uint64_t last_done, total;
  bool cancel;
};

static int
progress_fn (void *opaque, uint64_t done, uint64_t total)
{
  struct progress *p = opaque;

  if (done < p->last_done || done > total)
    die ("progress went backwards or past the total");
  p->calls++;
  p->last_done = done;
  p->total = total;
  return p->cancel && p->calls == 2;
}

static void
preallocation (enum image_prealloc mode, const char *name)
{
  const char *f = path ("pre.qcow2");
  struct progress p = { 0 };
  struct image_create_opts o = {
    .format = "qcow2", .size = 200 << 20, .prealloc = mode,
    .progress = progress_fn, .progress_opaque = &p,
  };

  if (image_create (f, &o) == -1)
    die ("preallocation=%s: %s", name, image_error ());
  qemu_img_check_clean (f);
  /* Every guest cluster mapped to the file. */
  if (run ("qemu-img map --output=json '%s' | grep -c '\"data\": true' | "
           "grep -q '^1$' && qemu-img map --output=json '%s' | "
           "grep -q '\"length\": 209715200'", f, f) != 0) {
    run ("qemu-img map --output=json '%s' >&2", f);
    die ("preallocation=%s: not every cluster is mapped", name);
  }
  if (mode >= IMAGE_PREALLOC_FALLOC) {
    if (disk_usage (f) < 200 << 20)
      die ("preallocation=%s: only %" PRIu64 " bytes reserved", name,
           disk_usage (f));
    if (p.calls < 2 || p.last_done != p.total)
      die ("preallocation=%s: progress called %u times, last %" PRIu64
           " of %" PRIu64, name, p.calls, p.last_done, p.total);
    /* A cancel in the middle removes the file. */
    memset (&p, 0, sizeof p);
    p.cancel = true;
    o.size = 1 << 30;
    if (image_create (f, &o) != -1 || image_errno () != ECANCELED)
      die ("preallocation=%s: a cancelled create did not fail with "
           "ECANCELED", name);
    if (access (f, F_OK) == 0)
      die ("preallocation=%s: a cancelled create left its file", name);
  }
}

static void
write_pattern (struct image *img, uint64_t off, uint64_t len, unsigned seed)
{
  uint8_t *buf = malloc (len);

  fill_pattern (buf, len, off, seed);
  CHECK (image_pwrite (img, buf, len, off, 0));
  free (buf);
}

/* An unknown header extension added by hand, then the backing file
 * changed: the extension survives. */
static void
set_backing_keeps_extensions (void)
{
  const char *f = path ("sb.qcow2");
  struct image *img;

  if (run ("cd '%s' && qemu-img create -q -f raw b1.raw 8M && "
           "qemu-img create -q -f raw b2.raw 8M && "
           "qemu-img create -q -f qcow2 -b b1.raw -F raw sb.qcow2 && "
           "/usr/bin/python3 -c \"\nimport struct\n"
           "f = open('sb.qcow2', 'r+b')\n"
           "f.seek(100); hl = struct.unpack('>I', f.read(4))[0]\n"
           "f.seek(hl); data = f.read(4096 - hl)\n"
           "ext = struct.pack('>II', 0x12345678, 5) + b'hello\\\\0\\\\0\\\\0'\n"
           "f.seek(hl); f.write(ext + data[:4096 - hl - 16])\n"
           "f.seek(8); off = struct.unpack('>Q', f.read(8))[0]\n"
           "f.seek(8); f.write(struct.pack('>Q', off + 16))\n\"",
           test_dir) != 0)
    die ("adding an unknown extension");
  if (run ("qemu-img check -q '%s'", f) != 0)
    die ("the hand-made extension broke the image");
  img = open_image (f, 0, 0);
  CHECK (image_set_backing (img, "b2.raw", "raw"));
  CHECK (image_close (img));
  info_says (f, (const char *const[]) {
      "\"backing-filename\":\"b2.raw\"", "\"backing-filename-format\":\"raw\"",
      NULL });
  if (run ("grep -q -a hello '%s'", f) != 0)
    die ("set_backing dropped an unknown header extension");
  img = open_image (f, 0, 0);
  CHECK (image_set_backing (img, NULL, NULL));
  CHECK (image_close (img));
  if (run ("qemu-img info '%s' | grep -q backing", f) == 0)
    die ("the backing file is still named after removing it");
  qemu_img_check_clean (f);
}

static void
make_empty (void)
{
  const char *base = path ("me-base.raw"), *ov = path ("me.qcow2");
  uint64_t before;
  struct image *img;

  if (run ("qemu-img create -q -f raw '%s' 32M && qemu-io -f raw "
           "-c 'write -P 0x61 0 32M' '%s' >/dev/null", base, base) != 0)
    die ("making the base");
  create_qcow2 (ov, 0, "me-base.raw", 0, -1, NULL, 0);
  img = open_image (ov, 0, 0);
  write_pattern (img, 0, 4 << 20, 2);
  write_pattern (img, 20 << 20, 3 << 20, 3);
  CHECK (image_zero (img, 1 << 20, 10 << 20, 0));
  CHECK (image_close (img));
  before = disk_usage (ov);

  img = open_image (ov, 0, 0);
  CHECK (image_make_empty (img));
  CHECK (image_close (img));
  if (run ("qemu-img compare -q -F raw '%s' '%s'", ov, base) != 0)
    die ("after make_empty the overlay does not read as its backing file");
  if (disk_usage (ov) * 4 > before || file_size (ov) > 1 << 20)
    die ("make_empty gave back too little: %" PRIu64 " of %" PRIu64
         " bytes still used, the file is %" PRIu64 " bytes",
         disk_usage (ov), before, file_size (ov));
  qemu_img_check_clean (ov);
  /* And it takes writes again. */
  img = open_image (ov, 0, 0);
  write_pattern (img, 5 << 20, 1 << 20, 4);
  CHECK (image_close (img));
  qemu_img_check_clean (ov);
}

int
main (int argc, char *argv[])
{
  test_init (argv[0]);
  defaults ();
  options ();
  bad_options ();
  constant_time_overlay ();
  preallocation (IMAGE_PREALLOC_METADATA, "metadata");
  preallocation (IMAGE_PREALLOC_FALLOC, "falloc");
  preallocation (IMAGE_PREALLOC_FULL, "full");
  set_backing_keeps_extensions ();
  make_empty ();
  return test_done ("qcow2 create and header changes");
}
