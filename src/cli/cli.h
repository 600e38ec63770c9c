/* Internal interface between the parts of the flame-lua executable:
 * main.c (options, startup), call.c (protected calls, Ctrl-C, error
 * reports), repl.c (read-eval-print loop), lineedit.c (line input and
 * history), complete.c (tab completion). */
#ifndef FLAME_CLI_H
#define FLAME_CLI_H

#include <lua.h>

#define FLAME_CLI_NAME    "flame-lua"
#define FLAME_CLI_VERSION "0.1"

/* Provided by the binding (src/lua). Declared here rather than by including
 * the binding's header so that the CLI does not depend on its include paths. */
int luaopen_flame(lua_State *L);

/* ---- call.c ---- */

/* Name prefixed to error reports; NULL inside the REPL (as lua.c does). */
extern const char *cli_progname;

/* Prints "progname: msg" (or just msg when pname is NULL) to stderr. */
void cli_message(const char *pname, const char *msg);
/* If status is an error, reports the message on top of the stack and pops it. */
int cli_report(lua_State *L, int status);
/* lua_pcall with a traceback handler; SIGINT interrupts the running code
 * and the caller's SIGINT disposition is restored afterwards. */
int cli_docall(lua_State *L, int narg, int nres);

/* ---- launch.c ---- */

/* flame-lua --nproc N [--nnodes M --node-rank R --master-addr A --master-port P] script [args]: starts the ranks,
 * prefixes their output, stops all when one fails; returns the exit status. */
int cli_launch(int argc, char **argv);

/* ---- repl.c ---- */

/* Interactive loop; returns at end of input. */
void cli_repl(lua_State *L);

/* ---- lineedit.c ---- */

enum { LINE_OK, LINE_EOF, LINE_INTERRUPTED };

/* Prepares line input; 'interactive' when stdin is a terminal. */
void line_init(lua_State *L, int interactive);
/* Reads one line (without its newline) into a malloc'ed *out. */
int line_read(const char *prompt, char **out);
/* Adds a complete chunk to the history. */
void line_save(const char *chunk);
/* Writes the history file, restores the terminal. Safe to call twice. */
void line_close(void);

/* ---- complete.c ---- */

/* Candidate completions of 'text' (a Lua name or an a.b.c / a.b:c chain):
 * pushes a table, a sequence of full replacement strings (empty when there
 * is nothing to offer). Never raises errors. */
void complete_push(lua_State *L, const char *text);
/* Hooks completion into readline (no-op without readline). */
void complete_install(lua_State *L);

#endif
