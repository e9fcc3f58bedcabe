/* SPDX-License-Identifier: BSD-3-Clause */
/* cowbdctl: the command-line client of cowbd --control=PATH.
 *
 *   cowbdctl [-s PATH] [--output=human|json] COMMAND [ARGS]
 *
 * Sends one request line, reads one reply line and prints it.  File
 * names are made absolute here (the server's working folder is not
 * ours).  Exit codes: 0 done, 1 the server answered with an error,
 * 2 a usage error, 3 no server to talk to (cannot connect, or it hung
 * up without an answer).
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <json.h>

#include "size.h"

#define EXIT_REFUSED 1
#define EXIT_USAGE   2
#define EXIT_NOSERVER 3
/* The longest reply read (an export-list of very many exports). */
#define MAX_REPLY (256u << 20)

static const char *sock_path;
static bool json_output;
static const char *format;
static bool read_only, hard;

static void
usage (FILE *f)
{
  fprintf (f,
"Usage: cowbdctl [-s PATH] [--output=human|json] COMMAND [ARGS]\n"
"Control a running cowbd through the control socket it was given.\n"
"\n"
"Commands:\n"
"  export-add NAME FILE [--format=FMT] [--read-only]\n"
"  export-remove NAME [--hard]  (safe by default: refused while in use)\n"
"  export-list\n"
"  clone-create NAME BASE [--format=qcow2|qed]\n"
"  status\n"
"  stats [NAME]                 request, byte and error counts, engine figures\n"
"\n"
"  -s, --socket=PATH      the server's control socket (default\n"
"                         $COWBD_CONTROL)\n"
"      --output=human|json  how to print the answer (default human)\n"
"  -f, --format=FMT       image format (export-add, clone-create)\n"
"  -r, --read-only        serve the export read-only (export-add)\n"
"      --hard             remove even if in use: clients are dropped\n"
"                         once their requests are answered\n"
"  -h, --help             show this help\n"
"  -V, --version          show the version\n"
"\n"
"Exit status: 0 done, 1 the server refused, 2 usage error, 3 cannot\n"
"reach the server.\n");
}

static void __attribute__ ((format (printf, 1, 2), noreturn))
bad_usage (const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "cowbdctl: ");
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fprintf (stderr, "\nTry 'cowbdctl --help' for more information.\n");
  exit (EXIT_USAGE);
}

enum { OPT_OUTPUT = 256, OPT_HARD };

static const struct option long_options[] = {
  { "socket", required_argument, NULL, 's' },
  { "output", required_argument, NULL, OPT_OUTPUT },
  { "format", required_argument, NULL, 'f' },
  { "read-only", no_argument, NULL, 'r' },
  { "hard", no_argument, NULL, OPT_HARD },
  { "help", no_argument, NULL, 'h' },
  { "version", no_argument, NULL, 'V' },
  { NULL, 0, NULL, 0 },
};

static void
parse_options (int argc, char *argv[])
{
  int c;

  while ((c = getopt_long (argc, argv, "s:f:rhV", long_options,
                           NULL)) != -1) {
    switch (c) {
    case 's': sock_path = optarg; break;
    case OPT_OUTPUT:
      if (strcmp (optarg, "json") != 0 && strcmp (optarg, "human") != 0)
        bad_usage ("--output=%s: expected human or json", optarg);
      json_output = strcmp (optarg, "json") == 0;
      break;
    case 'f': format = optarg; break;
    case 'r': read_only = true; break;
    case OPT_HARD: hard = true; break;
    case 'h': usage (stdout); exit (EXIT_SUCCESS);
    case 'V': printf ("cowbdctl %s\n", PACKAGE_VERSION); exit (EXIT_SUCCESS);
    default:
      fprintf (stderr, "Try 'cowbdctl --help' for more information.\n");
      exit (EXIT_USAGE);
    }
  }
}

/* ---- the request ------------------------------------------------------------ */

/* A file name as the server should see it: absolute. */
static json_object *
file_arg (const char *name)
{
  char *abs = realpath (name, NULL);
  json_object *o = json_object_new_string (abs ? abs : name);

  free (abs);
  return o;
}

static void
need_args (const char *cmd, int have, int want, const char *what)
{
  if (have != want)
    bad_usage ("%s takes %s", cmd, what);
}

/* The options that only some commands take. */
static void
check_flags (const char *cmd, bool fmt_ok, bool ro_ok, bool hard_ok)
{
  if ((format && !fmt_ok) || (read_only && !ro_ok) || (hard && !hard_ok))
    bad_usage ("%s does not take %s", cmd, format && !fmt_ok ? "--format"
               : read_only && !ro_ok ? "--read-only" : "--hard");
}

/* Builds "arguments" for COMMAND ARGS; sets *execute. */
static json_object *
build_args (const char *cmd, char **av, int ac, const char **execute)
{
  json_object *a = json_object_new_object ();

  *execute = cmd;
  if (strcmp (cmd, "export-add") == 0) {
    need_args (cmd, ac, 2, "NAME FILE");
    check_flags (cmd, true, true, false);
    json_object_object_add (a, "name", json_object_new_string (av[0]));
    json_object_object_add (a, "file", file_arg (av[1]));
    if (read_only)
      json_object_object_add (a, "read-only", json_object_new_boolean (1));
  }
  else if (strcmp (cmd, "export-remove") == 0) {
    need_args (cmd, ac, 1, "NAME");
    check_flags (cmd, false, false, true);
    json_object_object_add (a, "name", json_object_new_string (av[0]));
    json_object_object_add (a, "mode",
                            json_object_new_string (hard ? "hard" : "safe"));
  }
  else if (strcmp (cmd, "clone-create") == 0) {
    need_args (cmd, ac, 2, "NAME BASE");
    check_flags (cmd, true, false, false);
    json_object_object_add (a, "name", json_object_new_string (av[0]));
    json_object_object_add (a, "base", file_arg (av[1]));
  }
  else if (strcmp (cmd, "stats") == 0) {
    if (ac > 1)
      bad_usage ("%s takes [NAME]", cmd);
    check_flags (cmd, false, false, false);
    if (ac == 1)
      json_object_object_add (a, "name", json_object_new_string (av[0]));
    *execute = "query-stats";
  }
  else if (strcmp (cmd, "export-list") == 0 || strcmp (cmd, "status") == 0) {
    need_args (cmd, ac, 0, "no arguments");
    check_flags (cmd, false, false, false);
    if (strcmp (cmd, "status") == 0)
      *execute = "query-status";
  }
  else
    bad_usage ("unknown command '%s'", cmd);
  if (format)
    json_object_object_add (a, "format", json_object_new_string (format));
  return a;
}

/* ---- talking ------------------------------------------------------------------ */

static int
connect_server (void)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  int fd;

  if (strlen (sock_path) >= sizeof sun.sun_path) {
    fprintf (stderr, "cowbdctl: %s: path too long for a Unix socket\n",
             sock_path);
    exit (EXIT_NOSERVER);
  }
  strcpy (sun.sun_path, sock_path);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1 || connect (fd, (struct sockaddr *) &sun, sizeof sun) == -1) {
    fprintf (stderr, "cowbdctl: cannot connect to %s: %m\n", sock_path);
    exit (EXIT_NOSERVER);
  }
  return fd;
}

static void
send_all (int fd, const char *s, size_t len)
{
  while (len > 0) {
    ssize_t n = write (fd, s, len);
    if (n == -1 && errno == EINTR)
      continue;
    if (n <= 0) {
      fprintf (stderr, "cowbdctl: %s: %m\n", sock_path);
      exit (EXIT_NOSERVER);
    }
    s += n;
    len -= (size_t) n;
  }
}

/* One reply line, malloc'd and NUL-terminated. */
static char *
read_line (int fd)
{
  size_t len = 0, cap = 0;
  char *buf = NULL;

  for (;;) {
    ssize_t n;
    if (len + 4096 + 1 > cap) {
      cap = cap ? cap * 2 : 8192;
      if (cap > MAX_REPLY || (buf = realloc (buf, cap)) == NULL) {
        fprintf (stderr, "cowbdctl: the reply is too long\n");
        exit (EXIT_NOSERVER);
      }
    }
    n = read (fd, buf + len, cap - len - 1);
    if (n == -1 && errno == EINTR)
      continue;
    if (n <= 0) {
      fprintf (stderr, "cowbdctl: %s: the server hung up without an "
               "answer\n", sock_path);
      exit (EXIT_NOSERVER);
    }
    len += (size_t) n;
    buf[len] = '\0';
    if (memchr (buf + len - n, '\n', (size_t) n))
      return buf;
  }
}

/* ---- printing ----------------------------------------------------------------- */

static const char *
get_str (json_object *o, const char *key)
{
  json_object *v;

  if (!json_object_object_get_ex (o, key, &v) || v == NULL)
    return NULL;
  return json_object_get_string (v);
}

static int64_t
get_int (json_object *o, const char *key)
{
  json_object *v;

  return json_object_object_get_ex (o, key, &v) ? json_object_get_int64 (v)
    : 0;
}

static void
print_export (json_object *e)
{
  char size[32];
  json_object *deps;
  const char *b = get_str (e, "backing-file");
  size_t i, n;

  size_format ((uint64_t) get_int (e, "size"), size, sizeof size);
  printf ("%-24s %-6s %10s %5" PRId64 " %-3s %s", get_str (e, "name"),
          get_str (e, "format") ? get_str (e, "format") : "?", size,
          get_int (e, "connections"),
          json_object_get_boolean (json_object_object_get (e, "read-only"))
          ? "ro" : "rw", get_str (e, "file"));
  if (b)
    printf (" (backing %s)", b);
  if (json_object_object_get_ex (e, "dependents", &deps) &&
      (n = json_object_array_length (deps)) > 0) {
    printf (" (base of");
    for (i = 0; i < n; i++)
      printf (" %s", json_object_get_string (json_object_array_get_idx (deps,
                                                                         i)));
    printf (")");
  }
  printf ("\n");
}

/* "NAME: 2 connections; read 5/327680/0 write 7/28672/0; backing read
 * 327680 bytes, allocated 233472 bytes; metadata cache 13/2/0"
 * (requests/bytes/errors; hits/misses/evictions). */
static void
print_stats (json_object *e)
{
  json_object *ops;

  printf ("%s: %" PRId64 " connections;", get_str (e, "name"),
          get_int (e, "connections"));
  if (json_object_object_get_ex (e, "operations", &ops)) {
    json_object_object_foreach (ops, op, o) {
      json_object *errs;
      int64_t nerr = 0;
      if (json_object_object_get_ex (o, "errors", &errs)) {
        json_object_object_foreach (errs, k, v) {
          (void) k;
          nerr += json_object_get_int64 (v);
        }
      }
      printf (" %s %" PRId64 "/%" PRId64 "/%" PRId64, op,
              get_int (o, "requests"), get_int (o, "bytes"), nerr);
    }
  }
  printf ("; backing read %" PRId64 " bytes, allocated %" PRId64
          " bytes; metadata cache %" PRId64 "/%" PRId64 "/%" PRId64 "\n",
          get_int (e, "backing-read-bytes"), get_int (e, "allocated-bytes"),
          get_int (e, "metadata-cache-hits"),
          get_int (e, "metadata-cache-misses"),
          get_int (e, "metadata-cache-evictions"));
}

static void
print_human (const char *execute, json_object *ret)
{
  size_t i;

  if (strcmp (execute, "export-list") == 0) {
    printf ("%-24s %-6s %10s %5s %-3s %s\n", "NAME", "FORMAT", "SIZE",
            "CONNS", "RO", "FILE");
    for (i = 0; i < json_object_array_length (ret); i++)
      print_export (json_object_array_get_idx (ret, i));
  }
  else if (strcmp (execute, "query-stats") == 0) {
    json_object *list;
    printf ("connections: %" PRId64 "\n", get_int (ret, "connections"));
    if (json_object_object_get_ex (ret, "exports", &list))
      for (i = 0; i < json_object_array_length (list); i++)
        print_stats (json_object_array_get_idx (list, i));
  }
  else if (strcmp (execute, "query-status") == 0) {
    json_object_object_foreach (ret, key, val)
      printf ("%s: %s\n", key, json_object_get_string (val));
  }
}

/* Prints the reply; the exit status. */
static int
answer (const char *execute, const char *line)
{
  json_object *reply = json_tokener_parse (line), *ret, *err;
  int status = EXIT_SUCCESS;

  if (reply && json_object_object_get_ex (reply, "error", &err)) {
    fprintf (stderr, "cowbdctl: %s\n", get_str (err, "desc") ?: "error");
    status = EXIT_REFUSED;
  }
  else if (reply && json_object_object_get_ex (reply, "return", &ret)) {
    if (json_output)
      printf ("%s\n", json_object_to_json_string_ext
              (ret, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
    else
      print_human (execute, ret);
  }
  else {
    fprintf (stderr, "cowbdctl: %s: not a reply: %.80s\n", sock_path, line);
    status = EXIT_NOSERVER;
  }
  json_object_put (reply);
  return status;
}

int
main (int argc, char *argv[])
{
  json_object *req, *args;
  const char *execute, *s;
  char *line;
  int fd, status;

  /* A server that hangs up on us is exit 3, not a death by SIGPIPE. */
  signal (SIGPIPE, SIG_IGN);
  parse_options (argc, argv);
  if (optind >= argc)
    bad_usage ("%s", "no command");
  if (sock_path == NULL)
    sock_path = getenv ("COWBD_CONTROL");
  if (sock_path == NULL || sock_path[0] == '\0')
    bad_usage ("%s", "no socket: give -s PATH or set $COWBD_CONTROL");
  args = build_args (argv[optind], argv + optind + 1, argc - optind - 1,
                     &execute);
  req = json_object_new_object ();
  json_object_object_add (req, "execute", json_object_new_string (execute));
  json_object_object_add (req, "arguments", args);
  json_object_object_add (req, "id", json_object_new_int (1));
  s = json_object_to_json_string_ext (req, JSON_C_TO_STRING_PLAIN);

  fd = connect_server ();
  send_all (fd, s, strlen (s));
  send_all (fd, "\n", 1);
  line = read_line (fd);
  close (fd);
  status = answer (execute, line);
  free (line);
  json_object_put (req);
  return status;
}
