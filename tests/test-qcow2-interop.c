/* SPDX-License-Identifier: BSD-3-Clause */
/* qcow2 interoperability with qemu, both ways.
 *
 * Images qemu-img and qemu-io make - version 2 (compat=0.10) and 3, lazy
 * refcounts on and off, refcount_bits 1, 8, 16 and 64, clusters of 512
 * bytes to 2 MiB, zero clusters (with and without their host cluster),
 * compressed clusters (zlib and zstd, by qemu-img convert -c), internal
 * snapshots (qemu-img snapshot -c), extended L2 entries, and backing
 * chains - must read through the engine byte for byte as qemu-img
 * convert -O raw reads them, and show the same allocation as qemu-img map.
 *
 * Writing through the engine into images with internal snapshots keeps
 * every snapshot's data: after our writes (into shared clusters, shared L2
 * tables, compressed clusters, zeroes and trims), qemu-img check finds
 * nothing, the active layer equals our model, and qemu-img snapshot -a
 * brings back each snapshot exactly as saved before.
 */
#include <config.h>

#include "engine-test.h"

static uint8_t *
read_file (const char *file, uint64_t *len)
{
  struct stat st;
  uint8_t *buf;
  FILE *fp;

  if (stat (file, &st) == -1)
    die ("stat %s", file);
  *len = (uint64_t) st.st_size;
  buf = malloc (*len ? *len : 1);
  fp = fopen (file, "r");
  if (buf == NULL || fp == NULL || fread (buf, 1, *len, fp) != *len)
    die ("reading %s", file);
  fclose (fp);
  return buf;
}

static void
sh (const char *what, const char *cmd)
{
  if (run ("cd '%s' && (%s) >/dev/null", test_dir, cmd) != 0)
    die ("%s: %s failed", what, cmd);
}

/* ---- reading ----------------------------------------------------------- */

/* The engine reads file exactly as qemu-img convert -O raw does. */
static void
reads_like_qemu (const char *name)
{
  char cmd[4096];
  uint64_t len, i;
  uint8_t *want, *got;
  struct image *img;

  snprintf (cmd, sizeof cmd, "qemu-img convert -O raw '%s' want.raw", name);
  sh (name, cmd);
  want = read_file (path ("want.raw"), &len);
  img = open_image (path (name), IMAGE_OPEN_READONLY, 0);
  if (image_size (img) != len)
    die ("%s: size %" PRIu64 ", qemu says %" PRIu64, name, image_size (img),
         len);
  got = malloc (len ? len : 1);
  CHECK (image_pread (img, got, len, 0));
  for (i = 0; i < len; i++)
    if (got[i] != want[i])
      die ("%s: byte %" PRIu64 " reads 0x%02x, qemu reads 0x%02x", name, i,
           got[i], want[i]);
  CHECK (image_close (img));
  free (want);
  free (got);
}

/* Allocation as qemu-img map --output=json sees it, per 512-byte sector:
 * bit 0 data, bit 1 zero, bit 2 present, and the depth above. */
static uint8_t *
qemu_map (const char *name, uint64_t size)
{
  uint8_t *m = calloc (size / 512 + 1, 1);
  char cmd[4096], line[1024];
  FILE *fp;

  snprintf (cmd, sizeof cmd, "cd '%s' && qemu-img map --output=json '%s' | "
            "tr '{' '\\n'", test_dir, name);
  fp = popen (cmd, "r");
  if (fp == NULL || m == NULL)
    die ("popen");
  while (fgets (line, sizeof line, fp)) {
    uint64_t start, length, s;
    unsigned depth;
    uint8_t v;
    if (sscanf (line, " \"start\": %" SCNu64 ", \"length\": %" SCNu64
                ", \"depth\": %u", &start, &length, &depth) != 3)
      continue;
    v = (strstr (line, "\"data\": true") ? 1 : 0) |
        (strstr (line, "\"zero\": true") ? 2 : 0) |
        (strstr (line, "\"present\": true") ? 4 : 0) | (uint8_t) (depth << 3);
    for (s = start / 512; s < (start + length) / 512; s++)
      m[s] = v;
  }
  pclose (fp);
  return m;
}

struct ours {
  uint8_t *m;
};

static int
map_extent (void *opaque, const struct image_extent *e)
{
  struct ours *o = opaque;
  uint64_t s;
  uint8_t v = (e->flags & IMAGE_EXTENT_DATA ? 1 : 0) |
              (e->flags & IMAGE_EXTENT_ZERO ? 2 : 0) |
              (e->flags & IMAGE_EXTENT_PRESENT ? 4 : 0) |
              (uint8_t) (e->depth << 3);

  for (s = e->offset / 512; s < (e->offset + e->length) / 512; s++)
    o->m[s] = v;
  return 0;
}

static void
maps_like_qemu (const char *name)
{
  struct image *img = open_image (path (name), IMAGE_OPEN_READONLY, 0);
  uint64_t size = image_size (img), s;
  uint8_t *want = qemu_map (name, size);
  struct ours o = { calloc (size / 512 + 1, 1) };

  CHECK (image_extents (img, size, 0, 0, map_extent, &o));
  for (s = 0; s < size / 512; s++)
    if (o.m[s] != want[s])
      die ("%s: sector %" PRIu64 " maps as 0x%02x (data|zero<<1|present<<2|"
           "depth<<3), qemu-img map says 0x%02x", name, s, o.m[s], want[s]);
  CHECK (image_close (img));
  free (want);
  free (o.m);
}

/* Our check (read-only) finds nothing and counts as qemu-img check. */
static void
checks_like_qemu (const char *name)
{
  struct image *img = open_image (path (name), IMAGE_OPEN_READONLY, 0);
  struct image_check_result r;
  uint64_t q[5] = { 0 };
  char cmd[4096], line[256];
  FILE *fp;

  CHECK (image_check (img, 0, &r, NULL, NULL));
  CHECK (image_close (img));
  snprintf (cmd, sizeof cmd, "qemu-img check --output=json '%s'",
            path (name));
  fp = popen (cmd, "r");
  if (fp == NULL)
    die ("popen");
  while (fgets (line, sizeof line, fp)) {
    sscanf (line, " \"allocated-clusters\": %" SCNu64, &q[0]);
    sscanf (line, " \"fragmented-clusters\": %" SCNu64, &q[1]);
    sscanf (line, " \"compressed-clusters\": %" SCNu64, &q[2]);
    sscanf (line, " \"image-end-offset\": %" SCNu64, &q[3]);
    sscanf (line, " \"total-clusters\": %" SCNu64, &q[4]);
  }
  pclose (fp);
  if (r.corruptions || r.leaks || r.check_errors ||
      r.allocated_clusters != q[0] || r.fragmented_clusters != q[1] ||
      r.compressed_clusters != q[2] || r.image_end_offset != q[3] ||
      r.total_clusters != q[4])
    die ("%s: check: %" PRIu64 " corruptions %" PRIu64 " leaks, allocated %"
         PRIu64 " fragmented %" PRIu64 " compressed %" PRIu64 " end %"
         PRIu64 " total %" PRIu64 "; qemu-img check: %" PRIu64 " %" PRIu64
         " %" PRIu64 " %" PRIu64 " %" PRIu64, name, r.corruptions, r.leaks,
         r.allocated_clusters, r.fragmented_clusters, r.compressed_clusters,
         r.image_end_offset, r.total_clusters, q[0], q[1], q[2], q[3], q[4]);
}

/* qemu-io writes spread over the image: data, zero clusters (unmapped and
 * kept), a discard. */
static const char *qemu_io_writes =
  "-c 'write -P 0x5a 0 100K' -c 'write -P 0x6b 1M 64K' "
  "-c 'write -P 0x7c 3147264 5000' -c 'write -z 8M 256K' "
  "-c 'write -z -u 1M 32K' -c 'write -P 0x11 12M 1M' "
  "-c 'write -z 12845056 128K' -c 'discard 13107200 64K' "
  "-c 'write -P 0x22 15729152 512'";

static void
qemu_made (const char *name, const char *create_opts)
{
  char cmd[4096];

  snprintf (cmd, sizeof cmd, "qemu-img create -q -f qcow2 %s '%s' 16M && "
            "qemu-io -f qcow2 %s '%s'", create_opts, name, qemu_io_writes,
            name);
  sh (name, cmd);
  reads_like_qemu (name);
  maps_like_qemu (name);
  checks_like_qemu (name);
}

static void
versions_and_widths (void)
{
  qemu_made ("v2.qcow2", "-o compat=0.10");
  qemu_made ("v3.qcow2", "-o compat=1.1,lazy_refcounts=off");
  qemu_made ("lazy.qcow2", "-o compat=1.1,lazy_refcounts=on");
  qemu_made ("rb1.qcow2", "-o refcount_bits=1");
  qemu_made ("rb8.qcow2", "-o refcount_bits=8,cluster_size=4096");
  qemu_made ("rb64.qcow2", "-o refcount_bits=64,cluster_size=512");
  qemu_made ("c2m.qcow2", "-o cluster_size=2M");
  qemu_made ("prealloc.qcow2", "-o preallocation=metadata");
}

/* A partly compressible source, compressed by qemu-img convert -c. */
static void
compressed (void)
{
  sh ("source", "qemu-img create -q -f raw src.raw 9M && qemu-io -f raw "
      "-c 'write -P 0x33 0 2M' -c 'write -P 0x44 2100152 1M' "
      "-c 'write -z 5M 1M' src.raw && head -c 1M /dev/urandom | "
      "dd of=src.raw bs=1M seek=7 conv=notrunc status=none");
  sh ("zlib", "qemu-img convert -c -O qcow2 -f raw src.raw z.qcow2");
  reads_like_qemu ("z.qcow2");
  maps_like_qemu ("z.qcow2");
  checks_like_qemu ("z.qcow2");
  sh ("zlib, 4K", "qemu-img convert -c -O qcow2 -o cluster_size=4096 "
      "-f raw src.raw z4k.qcow2");
  reads_like_qemu ("z4k.qcow2");
#ifdef HAVE_ZSTD
  sh ("zstd", "qemu-img convert -c -O qcow2 -o compression_type=zstd "
      "-f raw src.raw zstd.qcow2");
  reads_like_qemu ("zstd.qcow2");
#endif
}

/* Extended L2 entries: read-only, and said so on a read-write open. */
static void
extended_l2 (void)
{
  struct image_open_opts o = { .flags = 0 };

  sh ("extended L2", "qemu-img create -q -f raw xb.raw 16M && qemu-io -f raw "
      "-c 'write -P 0x77 0 16M' xb.raw && qemu-img create -q -f qcow2 "
      "-o extended_l2=on,cluster_size=128K -b xb.raw -F raw x.qcow2 && "
      "qemu-io -f qcow2 -c 'write -P 0x12 4K 4K' -c 'write -z 64K 8K' "
      "-c 'write -P 0x34 1049576 200K' -c 'write -z -u 3M 256K' x.qcow2");
  reads_like_qemu ("x.qcow2");
  maps_like_qemu ("x.qcow2");
  checks_like_qemu ("x.qcow2");
  if (image_open (path ("x.qcow2"), &o) != NULL ||
      image_errno () != EROFS ||
      strstr (image_error (), "extended L2") == NULL)
    die ("read-write open of an extended L2 image: expected EROFS naming "
         "the feature, got %s", image_error ());
}

/* A chain qemu made: qcow2 over qcow2 over raw. */
static void
qemu_chain (void)
{
  sh ("chain", "qemu-img create -q -f raw cb.raw 16M && qemu-io -f raw "
      "-c 'write -P 0x01 0 16M' cb.raw && qemu-img create -q -f qcow2 "
      "-b cb.raw -F raw cm.qcow2 && qemu-io -f qcow2 -c 'write -P 0x02 1M 3M' "
      "cm.qcow2 && qemu-img create -q -f qcow2 -b cm.qcow2 -F qcow2 "
      "ct.qcow2 && qemu-io -f qcow2 -c 'write -P 0x03 2M 1M' "
      "-c 'write -z 3M 64K' ct.qcow2");
  reads_like_qemu ("ct.qcow2");
  maps_like_qemu ("ct.qcow2");
}

/* ---- writing into images with snapshots -------------------------------- */

static uint64_t snap_size;
static uint8_t *model;

static void
w (struct image *img, uint64_t off, uint64_t len, unsigned seed)
{
  uint8_t *buf = malloc (len);

  fill_pattern (buf, len, off, seed);
  CHECK (image_pwrite (img, buf, len, off, 0));
  memcpy (model + off, buf, len);
  free (buf);
}

static void
z (struct image *img, uint64_t off, uint64_t len, unsigned flags)
{
  CHECK (image_zero (img, len, off, flags));
  memset (model + off, 0, len);
}

/* Our writes over the whole image: partial and whole clusters, shared or
 * not, compressed or not, zero, trim. */
static void
engine_writes (const char *name)
{
  struct image *img = open_image (path (name), 0, 0);
  uint8_t *buf = malloc (snap_size);
  uint64_t len, i;

  free (model);
  model = read_file (path ("active.raw"), &len);
  w (img, 100, 1000, 1);                /* partial, shared cluster */
  w (img, 64 * 1024, 64 * 1024, 2);     /* a whole shared cluster */
  w (img, 2 * 1024 * 1024 + 5, 300000, 3);
  w (img, 5 * 1024 * 1024 - 100, 200, 4);
  w (img, 9 * 1024 * 1024 + 7, 10, 5);  /* unallocated */
  w (img, 100, 50, 6);                  /* our own cluster now: in place */
  z (img, 6 * 1024 * 1024, 256 * 1024, 0);
  z (img, 7 * 1024 * 1024, 128 * 1024, IMAGE_MAY_TRIM);
  z (img, 3 * 1024 * 1024 + 100, 1000, 0);
  CHECK (image_trim (img, 128 * 1024, 1024 * 1024, 0));
  CHECK (image_pread (img, buf, 128 * 1024, 1024 * 1024));
  for (i = 0; i < 128 * 1024; i++)
    if (buf[i] && buf[i] != model[1024 * 1024 + i])
      die ("%s: trim changed byte %" PRIu64, name, 1024 * 1024 + i);
  memcpy (model + 1024 * 1024, buf, 128 * 1024);
  verify_image (img, model, snap_size, "after writes into snapshot data");
  CHECK (image_close (img));
  free (buf);
}

/* Takes the snapshots of a script, writes through the engine, and checks
 * that qemu finds every snapshot as it was. */
static void
snapshots (const char *name, const char *opts)
{
  char cmd[4096];
  uint64_t len;
  uint8_t *got, *want;

  snap_size = 12 << 20;
  snprintf (cmd, sizeof cmd,
            "qemu-img create -q -f qcow2 %s '%s' 12M && "
            "qemu-io -f qcow2 -c 'write -P 0x41 0 4M' -c 'write -z 4M 1M' "
            "'%s' && qemu-img convert -O raw '%s' s1.raw && "
            "qemu-img snapshot -c s1 '%s' && "
            "qemu-io -f qcow2 -c 'write -P 0x42 1M 1M' -c 'write -P 0x43 6M 2M' "
            "'%s' && qemu-img convert -O raw '%s' s2.raw && "
            "qemu-img snapshot -c s2 '%s' && "
            "qemu-io -f qcow2 -c 'write -P 0x44 3M 64K' '%s' && "
            "qemu-img convert -O raw '%s' active.raw",
            opts, name, name, name, name, name, name, name, name, name);
  sh (name, cmd);
  reads_like_qemu (name);
  checks_like_qemu (name);
  engine_writes (name);
  qemu_img_check_clean (path (name));
  write_file (path ("model.raw"), model, snap_size);
  snprintf (cmd, sizeof cmd, "qemu-img compare -q -f qcow2 -F raw '%s' "
            "model.raw", name);
  sh ("the active layer after our writes", cmd);
  /* Each snapshot as it was saved. */
  snprintf (cmd, sizeof cmd, "cp '%s' a.qcow2 && qemu-img snapshot -a s1 "
            "a.qcow2 && qemu-img compare -q -f qcow2 -F raw a.qcow2 s1.raw && "
            "qemu-img check -q a.qcow2 && qemu-img snapshot -a s2 a.qcow2 && "
            "qemu-img compare -q -f qcow2 -F raw a.qcow2 s2.raw", name);
  sh ("snapshots after our writes", cmd);
  /* And our own read of the active layer agrees with qemu's. */
  snprintf (cmd, sizeof cmd, "qemu-img convert -O raw '%s' got.raw", name);
  sh (name, cmd);
  got = read_file (path ("got.raw"), &len);
  want = read_file (path ("model.raw"), &len);
  if (memcmp (got, want, len) != 0)
    die ("%s: qemu reads our writes differently", name);
  free (got);
  free (want);
}

/* Compressed clusters shared with a snapshot, written through the
 * engine. */
static void
compressed_snapshot (void)
{
  sh ("compressed snapshot", "qemu-img create -q -f raw cs.raw 12M && "
      "qemu-io -f raw -c 'write -P 0x61 0 12M' cs.raw && "
      "qemu-img convert -c -O qcow2 -f raw cs.raw zs.qcow2 && "
      "qemu-img snapshot -c s1 zs.qcow2 && cp cs.raw s1.raw && "
      "cp cs.raw s2.raw && qemu-img snapshot -c s2 zs.qcow2 && "
      "cp cs.raw active.raw");
  snap_size = 12 << 20;
  engine_writes ("zs.qcow2");
  qemu_img_check_clean (path ("zs.qcow2"));
  write_file (path ("model.raw"), model, snap_size);
  sh ("compressed snapshot", "qemu-img compare -q -F raw zs.qcow2 model.raw "
      "&& qemu-img snapshot -a s1 zs.qcow2 && "
      "qemu-img compare -q -F raw zs.qcow2 s1.raw");
}

int
main (int argc, char *argv[])
{
  test_init (argv[0]);
  versions_and_widths ();
  compressed ();
  extended_l2 ();
  qemu_chain ();
  snapshots ("snap-v3.qcow2", "-o lazy_refcounts=off");
  snapshots ("snap-lazy.qcow2", "-o lazy_refcounts=on");
  snapshots ("snap-v2.qcow2", "-o compat=0.10");
  snapshots ("snap-4k.qcow2", "-o cluster_size=4096,refcount_bits=8");
  compressed_snapshot ();
  free (model);
  return test_done ("qcow2 interop with qemu");
}
