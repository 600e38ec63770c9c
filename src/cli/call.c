/* Protected calls with tracebacks, Ctrl-C interruption and error reports,
 * following lua.c so that flame-lua behaves like the stock interpreter. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <signal.h>
#include <stdio.h>

#include <lauxlib.h>
#include <lua.h>

#include "cli.h"
#include "flame.h"

const char *cli_progname = FLAME_CLI_NAME;

void cli_message(const char *pname, const char *msg)
{
    fflush(stdout);  /* earlier output first when both go to one pipe */
    if (pname) fprintf(stderr, "%s: ", pname);
    fprintf(stderr, "%s\n", msg);
    fflush(stderr);
}

int cli_report(lua_State *L, int status)
{
    if (status != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        cli_message(cli_progname, msg ? msg : "(error object is not a string)");
        lua_pop(L, 1);
    }
    return status;
}

/* Turns the error object into a string with a traceback; non-string errors
 * use their __tostring when they have one (as lua.c does). */
static int msghandler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* A signal handler may not call into Lua directly; it only sets a hook, and
 * the hook raises the error from a point where the VM is consistent. */
static lua_State *volatile interrupt_L;
/* The thread running the Lua code. A process-directed SIGINT may land on a
 * worker thread (OpenBLAS and OpenMP keep some); the handler sends it on to
 * this one, so that the hook is set by the thread that runs the VM, as in
 * lua.c (pthread_kill is async-signal-safe). */
static pthread_t lua_thread;

static void lstop(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted!");
}

static void set_sigint(void (*handler)(int), struct sigaction *old)
{
    struct sigaction sa;
    sa.sa_handler = handler;
    sa.sa_flags = 0;  /* no SA_RESTART: a blocking read returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, old);
}

static void laction(int sig)
{
    int flag = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
    if (!pthread_equal(pthread_self(), lua_thread)) {
        pthread_kill(lua_thread, sig);
        return;
    }
    /* a second Ctrl-C before the hook runs (e.g. stuck in C code) kills us */
    set_sigint(SIG_DFL, NULL);
    (void)sig;
    /* lua_sethook is safe here (lua.c does the same). The engine's stop
     * flag (a store to an atomic) ends a long C op too: the next op, or the
     * next piece of a long CPU kernel, fails with "interrupted". */
    lua_sethook(interrupt_L, lstop, flag, 1);
    fl_context_interrupt(NULL);
}

int cli_docall(lua_State *L, int narg, int nres)
{
    struct sigaction old;
    int status;
    int base = lua_gettop(L) - narg;
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    interrupt_L = L;
    lua_thread = pthread_self();
    set_sigint(laction, &old);
    fl_context_reset_stop(NULL); /* flame-lua runs in the default context */
    status = lua_pcall(L, narg, nres, base);
    fl_context_reset_stop(NULL);
    /* restores whatever the caller had, e.g. the REPL's prompt handler */
    sigaction(SIGINT, &old, NULL);
    /* a Ctrl-C that arrived just as the call returned must not fire later;
     * user hooks (debug.sethook) are left alone */
    if (lua_gethook(L) == lstop) lua_sethook(L, NULL, 0, 0);
    lua_remove(L, base);
    return status;
}
