/* SPDX-License-Identifier: BSD-3-Clause */
/* The --control commands (control.c reads and answers the lines), run on
 * a worker because they may read headers or create images.  Each checks
 * its arguments (every one known, required ones present, each of its
 * type) before it touches the registry, and answers with a json_object
 * or a one-line error.
 *
 *   export-add    name, file, [format], [read-only]   -> {}
 *   export-remove name, [mode: "safe" | "hard"]       -> {}
 *   export-list                                       -> [ {...}, ... ]
 *   clone-create  name, base, [format]                -> {}
 *   query-status                                      -> {...}
 *   query-stats   [name]                              -> {..., exports: [...]}
 */
#include <config.h>

#ifdef HAVE_JSON_C

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json.h>

#include "internal.h"

/* One argument a command takes. */
struct ctl_arg {
  const char *key;
  enum json_type type;          /* json_type_string or json_type_boolean */
  bool required;
};

struct ctl_command {
  const char *name;
  const struct ctl_arg *args;   /* ends with a NULL key */
  int (*run) (json_object *args, struct ctl_result *res);
};

static int __attribute__ ((format (printf, 2, 3)))
fail (struct ctl_result *res, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  if (vasprintf (&res->error, fmt, ap) == -1)
    res->error = NULL;
  va_end (ap);
  if (res->error == NULL)
    res->error = strdup ("out of memory");
  return -1;
}

static int
fail_engine (struct ctl_result *res)
{
  return fail (res, "%s", image_error ());
}

static const char *
type_name (enum json_type t)
{
  return t == json_type_boolean ? "a boolean" : "a string";
}

/* Every argument known and of its type, the required ones present. */
static int
check_args (const struct ctl_command *cmd, json_object *args,
            struct ctl_result *res)
{
  const struct ctl_arg *a;

  if (args) {
    json_object_object_foreach (args, key, val) {
      for (a = cmd->args; a->key; a++)
        if (strcmp (a->key, key) == 0)
          break;
      if (a->key == NULL)
        return fail (res, "%s: unknown argument '%.64s'", cmd->name, key);
      if (!json_object_is_type (val, a->type))
        return fail (res, "%s: argument '%s' must be %s", cmd->name, key,
                     type_name (a->type));
    }
  }
  for (a = cmd->args; a->key; a++)
    if (a->required &&
        (args == NULL || !json_object_object_get_ex (args, a->key, NULL)))
      return fail (res, "%s: missing argument '%s'", cmd->name, a->key);
  return 0;
}

static const char *
arg_str (json_object *args, const char *key)
{
  json_object *v;

  if (args == NULL || !json_object_object_get_ex (args, key, &v))
    return NULL;
  return json_object_get_string (v);
}

static bool
arg_bool (json_object *args, const char *key)
{
  json_object *v;

  return args && json_object_object_get_ex (args, key, &v) &&
    json_object_get_boolean (v);
}

/* format: one the engine knows ("auto" probes). */
static int
check_format (const char *cmd, const char *f, struct ctl_result *res)
{
  if (f == NULL || strcmp (f, "raw") == 0 || strcmp (f, "qed") == 0 ||
      strcmp (f, "qcow2") == 0 || strcmp (f, "auto") == 0)
    return 0;
  return fail (res, "%s: unknown format '%.32s' (known: %s)", cmd, f,
               IMAGE_FORMATS);
}

/* ---- the commands ---------------------------------------------------------- */

static int
cmd_export_add (json_object *args, struct ctl_result *res)
{
  const char *name = arg_str (args, "name"), *file = arg_str (args, "file");
  const char *format = arg_str (args, "format");
  struct registry_add_opts o = {
    .format = format && strcmp (format, "auto") ? format : NULL,
    .readonly = arg_bool (args, "read-only"),
  };

  if (check_format ("export-add", format, res) == -1)
    return -1;
  if (name[0] == '\0')
    return fail (res, "export-add: the name is empty");
  if (file[0] == '\0')
    return fail (res, "export-add: the file name is empty");
  if (registry_add_with (exports_registry (), name, file, &o) == -1)
    return fail_engine (res);
  log_notice ("control: added export '%s' (%s)", name, file);
  res->ret = json_object_new_object ();
  return 0;
}

static int
cmd_export_remove (json_object *args, struct ctl_result *res)
{
  const char *name = arg_str (args, "name"), *mode = arg_str (args, "mode");
  bool hard = mode && strcmp (mode, "hard") == 0;

  if (mode && !hard && strcmp (mode, "safe") != 0)
    return fail (res, "export-remove: mode '%.32s': expected safe or hard",
                 mode);
  if (registry_remove (exports_registry (), name,
                       hard ? REGISTRY_REMOVE_HARD
                       : REGISTRY_REMOVE_SAFE) == -1)
    return fail_engine (res);
  log_notice ("control: removed export '%s'%s", name, hard ? " (hard)" : "");
  res->cut = hard;
  res->ret = json_object_new_object ();
  return 0;
}

static json_object *
str_or_null (const char *s)
{
  return s ? json_object_new_string (s) : NULL;
}

static json_object *
entry_json (const struct registry_entry *x)
{
  json_object *o = json_object_new_object ();
  json_object *deps = json_object_new_array ();
  size_t i;

  json_object_object_add (o, "name", json_object_new_string (x->name));
  json_object_object_add (o, "file", json_object_new_string (x->path));
  json_object_object_add (o, "format", str_or_null (x->format));
  json_object_object_add (o, "size", json_object_new_int64 ((int64_t) x->size));
  json_object_object_add (o, "connections",
                          json_object_new_int64 (x->connections));
  json_object_object_add (o, "read-only",
                          json_object_new_boolean (x->readonly));
  json_object_object_add (o, "backing-file", str_or_null (x->backing));
  for (i = 0; i < x->ndependents; i++)
    json_object_array_add (deps, json_object_new_string (x->dependents[i]));
  json_object_object_add (o, "dependents", deps);
  return o;
}

static int
cmd_export_list (json_object *args, struct ctl_result *res)
{
  struct registry_entry *v;
  size_t n, i;

  if (registry_entries (exports_registry (), &v, &n) == -1)
    return fail_engine (res);
  res->ret = json_object_new_array ();
  for (i = 0; i < n; i++)
    json_object_array_add (res->ret, entry_json (&v[i]));
  registry_entries_free (v, n);
  return 0;
}

static int
cmd_clone_create (json_object *args, struct ctl_result *res)
{
  const char *name = arg_str (args, "name"), *base = arg_str (args, "base");
  const char *format = arg_str (args, "format");

  if (format && strcmp (format, "qcow2") && strcmp (format, "qed"))
    return fail (res, "clone-create: format '%.32s': expected qcow2 or qed",
                 format);
  if (registry_clone (exports_registry (), name, base, format) == -1)
    return fail_engine (res);
  log_notice ("control: created clone '%s' of %s", name, base);
  res->ret = json_object_new_object ();
  return 0;
}

static int
cmd_query_stats (json_object *args, struct ctl_result *res)
{
  const char *name = arg_str (args, "name");

  if (name && (res->stats_name = strdup (name)) == NULL)
    return fail (res, "out of memory");
  res->ret = json_object_new_object ();
  res->stats = true;            /* control.c adds the figures on the loop */
  return 0;
}

static int
cmd_query_status (json_object *args, struct ctl_result *res)
{
  json_object *o = json_object_new_object ();

  json_object_object_add (o, "version",
                          json_object_new_string (PACKAGE_VERSION));
  json_object_object_add (o, "pid", json_object_new_int64 (getpid ()));
  json_object_object_add (o, "status", json_object_new_string ("running"));
  json_object_object_add (o, "exports",
                          json_object_new_int64 ((int64_t)
                            registry_count (exports_registry ())));
  json_object_object_add (o, "read-only",
                          json_object_new_boolean (cfg.readonly));
  res->ret = o;
  res->status = true;           /* control.c adds "connections" */
  return 0;
}

/* ---- the table -------------------------------------------------------------- */

static const struct ctl_arg args_export_add[] = {
  { "name", json_type_string, true },
  { "file", json_type_string, true },
  { "format", json_type_string, false },
  { "read-only", json_type_boolean, false },
  { NULL },
};
static const struct ctl_arg args_export_remove[] = {
  { "name", json_type_string, true },
  { "mode", json_type_string, false },
  { NULL },
};
static const struct ctl_arg args_clone_create[] = {
  { "name", json_type_string, true },
  { "base", json_type_string, true },
  { "format", json_type_string, false },
  { NULL },
};
static const struct ctl_arg args_query_stats[] = {
  { "name", json_type_string, false },
  { NULL },
};
static const struct ctl_arg args_none[] = { { NULL } };

static const struct ctl_command commands[] = {
  { "export-add", args_export_add, cmd_export_add },
  { "export-remove", args_export_remove, cmd_export_remove },
  { "export-list", args_none, cmd_export_list },
  { "clone-create", args_clone_create, cmd_clone_create },
  { "query-status", args_none, cmd_query_status },
  { "query-stats", args_query_stats, cmd_query_stats },
};

static const struct ctl_command *
find (const char *name)
{
  size_t i;

  for (i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp (commands[i].name, name) == 0)
      return &commands[i];
  return NULL;
}

bool
control_known (const char *name)
{
  return find (name) != NULL;
}

void
control_run (const char *name, void *args, struct ctl_result *res)
{
  const struct ctl_command *cmd = find (name);

  memset (res, 0, sizeof *res);
  if (check_args (cmd, args, res) == -1)
    return;
  if (cmd->run (args, res) == -1) {
    json_object_put (res->ret);
    res->ret = NULL;
  }
}

#endif /* HAVE_JSON_C */
