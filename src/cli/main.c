/* flame-lua: the stock lua5.4 command line (same options, same 'arg' table,
 * same exit statuses) with the flame module preloaded and a friendlier REPL.
 * The option handling mirrors lua.c closely so scripts behave identically. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "cli.h"

#define LUA_INIT_VAR "LUA_INIT"
#define LUA_INITVARVERSION LUA_INIT_VAR "_" LUA_VERSION_MAJOR "_" LUA_VERSION_MINOR

/* bits of collectargs' result */
enum { HAS_ERROR = 1, HAS_I = 2, HAS_V = 4, HAS_E = 8, HAS_BIG_E = 16, HAS_H = 32 };

static void print_usage(FILE *out, const char *badoption)
{
    if (badoption) {
        fprintf(out, "%s: ", FLAME_CLI_NAME);
        if (badoption[1] == 'e' || badoption[1] == 'l')
            fprintf(out, "'%s' needs argument\n", badoption);
        else
            fprintf(out, "unrecognized option '%s'\n", badoption);
    }
    fprintf(out,
            "usage: %s [options] [script [args]]\n"
            "Available options are:\n"
            "  -e stat   execute string 'stat'\n"
            "  -i        enter interactive mode after executing 'script'\n"
            "  -l mod    require library 'mod' into global 'mod'\n"
            "  -l g=mod  require library 'mod' into global 'g'\n"
            "  -v        show version information\n"
            "  -E        ignore environment variables\n"
            "  -W        turn warnings on\n"
            "  -h        show this help\n"
            "  --        stop handling options\n"
            "  -         stop handling options and execute stdin\n"
            "  --nproc N [--nnodes M --node-rank R --master-addr A --master-port P] script [args]\n"
            "            run N ranks of script (flame.distributed; see docs/distributed.md)\n"
            "The module 'flame' is preloaded into the global 'flame'.\n",
            FLAME_CLI_NAME);
    fflush(out);
}

static void print_version(void)
{
    printf("FLAME-Lua %s (%s)\n", FLAME_CLI_VERSION, LUA_RELEASE);
    fflush(stdout);
}

/* Scans the options. *first receives the index of the script name (argc when
 * there is none) or, on error, of the offending option. As in lua.c. */
static int collectargs(char **argv, int *first)
{
    int args = 0;
    int i;
    for (i = 1; argv[i] != NULL; i++) {
        *first = i;
        if (argv[i][0] != '-') return args;  /* the script name */
        switch (argv[i][1]) {
        case '-':  /* '--' */
            if (argv[i][2] != '\0') return HAS_ERROR;
            *first = i + 1;
            return args;
        case '\0':  /* '-': script is stdin */
            return args;
        case 'E':
            if (argv[i][2] != '\0') return HAS_ERROR;
            args |= HAS_BIG_E;
            break;
        case 'W':
            if (argv[i][2] != '\0') return HAS_ERROR;
            break;
        case 'h':
            if (argv[i][2] != '\0') return HAS_ERROR;
            args |= HAS_H;
            break;
        case 'i':
            args |= HAS_I;  /* -i implies -v */
            /* fall through */
        case 'v':
            if (argv[i][2] != '\0') return HAS_ERROR;
            args |= HAS_V;
            break;
        case 'e':
            args |= HAS_E;
            /* fall through */
        case 'l':  /* both need an argument, attached or the next word */
            if (argv[i][2] == '\0') {
                i++;
                if (argv[i] == NULL || argv[i][0] == '-') return HAS_ERROR;
            }
            break;
        default:
            return HAS_ERROR;
        }
    }
    *first = i;
    return args;
}

/* arg[0] is the script, arg[1..] its arguments, and the interpreter and
 * options get the negative indices (arg[-1], ..., argv[0]). */
static void createargtable(lua_State *L, char **argv, int argc, int script)
{
    int i, narg;
    if (script == argc) script = 0;  /* no script: argv[0] is arg[0] */
    narg = argc - (script + 1);
    lua_createtable(L, narg, script + 1);
    for (i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");
}

static int dochunk(lua_State *L, int status)
{
    if (status == LUA_OK) status = cli_docall(L, 0, 0);
    return cli_report(L, status);
}

static int dofile(lua_State *L, const char *name)
{
    return dochunk(L, luaL_loadfile(L, name));
}

static int dostring(lua_State *L, const char *s, const char *name)
{
    return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* -l mod or -l g=mod: g = require(mod) */
static int dolibrary(lua_State *L, char *globname)
{
    int status;
    char *modname = strchr(globname, '=');
    if (modname == NULL) {
        modname = globname;
    } else {
        *modname = '\0';
        modname++;
    }
    lua_getglobal(L, "require");
    lua_pushstring(L, modname);
    status = cli_docall(L, 1, 1);
    if (status == LUA_OK) lua_setglobal(L, globname);
    return cli_report(L, status);
}

/* package.preload.flame = luaopen_flame, then the global flame = require
 * "flame", so that scripts can use either the global or require. */
static int load_flame(lua_State *L)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_flame);
    lua_setfield(L, -2, "flame");
    lua_pop(L, 1);
    return dolibrary(L, (char[]){"flame"});
}

static int handle_luainit(lua_State *L)
{
    const char *name = "=" LUA_INITVARVERSION;
    const char *init = getenv(name + 1);
    if (init == NULL) {
        name = "=" LUA_INIT_VAR;
        init = getenv(name + 1);
    }
    if (init == NULL) return LUA_OK;
    if (init[0] == '@') return dofile(L, init + 1);
    return dostring(L, init, name);
}

/* Runs -e and -l (and -W) in command-line order, up to the script. */
static int runargs(lua_State *L, char **argv, int n)
{
    int i;
    for (i = 1; i < n; i++) {
        int option = argv[i][1];
        switch (option) {
        case 'e':
        case 'l': {
            int status;
            char *extra = argv[i] + 2;
            if (*extra == '\0') extra = argv[++i];
            status = option == 'e' ? dostring(L, extra, "=(command line)")
                                   : dolibrary(L, extra);
            if (status != LUA_OK) return 0;
            break;
        }
        case 'W':
            lua_warning(L, "@on", 0);
            break;
        }
    }
    return 1;
}

/* Pushes arg[1..#arg] as the script's '...'. */
static int pushargs(lua_State *L)
{
    int i, n;
    if (lua_getglobal(L, "arg") != LUA_TTABLE) luaL_error(L, "'arg' is not a table");
    n = (int)luaL_len(L, -1);
    luaL_checkstack(L, n + 3, "too many arguments to script");
    for (i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
    lua_remove(L, -i);
    return n;
}

static int handle_script(lua_State *L, char **argv)
{
    int status;
    const char *fname = argv[0];
    /* "-" is stdin, unless it came after "--" (then it is a file named -) */
    if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0) fname = NULL;
    status = luaL_loadfile(L, fname);
    if (status == LUA_OK) {
        int n = pushargs(L);
        status = cli_docall(L, n, LUA_MULTRET);
    }
    return cli_report(L, status);
}

/* Everything runs inside this protected function so that memory errors
 * while setting up are reported rather than aborting. */
static int pmain(lua_State *L)
{
    int argc = (int)lua_tointeger(L, 1);
    char **argv = (char **)lua_touserdata(L, 2);
    int script = argc;
    int args = collectargs(argv, &script);
    int optlim = script > 0 ? script : argc;
    luaL_checkversion(L);
    if (args == HAS_ERROR) {
        print_usage(stderr, argv[script]);
        return 0;
    }
    if (args & HAS_H) {
        print_usage(stdout, NULL);
        lua_pushboolean(L, 1);
        return 1;
    }
    if (args & HAS_V) print_version();
    if (args & HAS_BIG_E) {  /* tells the package library to ignore LUA_PATH etc. */
        lua_pushboolean(L, 1);
        lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
    }
    luaL_openlibs(L);
    createargtable(L, argv, argc, script);
    lua_gc(L, LUA_GCRESTART);
    lua_gc(L, LUA_GCGEN, 0, 0);
    if (load_flame(L) != LUA_OK) return 0;
    if (!(args & HAS_BIG_E) && handle_luainit(L) != LUA_OK) return 0;
    if (!runargs(L, argv, optlim)) return 0;
    if (script < argc && handle_script(L, argv + script) != LUA_OK) return 0;
    if (args & HAS_I) {
        cli_repl(L);
    } else if (script == argc && !(args & (HAS_E | HAS_V))) {
        if (isatty(STDIN_FILENO)) {
            print_version();
            cli_repl(L);
        } else {
            /* like lua, a piped stdin is a script; unlike lua 5.4.4, its
             * failure is the exit status (lua ignores it and exits 0) */
            if (dofile(L, NULL) != LUA_OK) return 0;
        }
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* OpenBLAS 0.3.21 (Debian 12's) picks its kernels by CPU model, and gives a model it does not know (this
 * project's CPU machine: a Xeon of family 6, model 0xCF) its generic SSE3 kernels ("Prescott"): GEMMs there ran
 * 2.5 to 4.6 times slower than with the AVX-512 ones. Before anything runs, the interpreter has OpenBLAS choose
 * again by the CPU's features, as OPENBLAS_CORETYPE does (which OpenBLAS reads only when it loads; a host that
 * links flame sets that variable itself, docs/embedding.md). The variable stays set for the processes flame-lua
 * starts. Weak: other BLAS libraries, or an OpenBLAS built for one CPU, have none of these. */
void gotoblas_dynamic_init(void) __attribute__((weak));
void gotoblas_dynamic_quit(void) __attribute__((weak));
char *openblas_get_corename(void) __attribute__((weak));
static void blas_pick_kernels(void)
{
    if (!gotoblas_dynamic_init || !gotoblas_dynamic_quit || !openblas_get_corename || getenv("OPENBLAS_CORETYPE"))
        return;
    const char *core = openblas_get_corename();
    if (core == NULL || strcmp(core, "Prescott") != 0) return; /* it knew the CPU */
    const char *want = NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl"))
        want = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        want = "Haswell";
    if (want == NULL || setenv("OPENBLAS_CORETYPE", want, 0) != 0) return;
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
}

int main(int argc, char **argv)
{
    int status, result;
    static char *noargs[] = {FLAME_CLI_NAME, NULL};
    lua_State *L;
    blas_pick_kernels();
    if (argc < 1 || argv[0] == NULL) {  /* exec'd without argv[0] */
        argc = 1;
        argv = noargs;
    }
    /* --nproc and the other long options (lua's own are single-dash): the multi-process launcher */
    if (argc > 1 && strncmp(argv[1], "--", 2) == 0 && argv[1][2] != '\0') return cli_launch(argc, argv);
    L = luaL_newstate();
    if (L == NULL) {
        cli_message(FLAME_CLI_NAME, "cannot create state: not enough memory");
        return EXIT_FAILURE;
    }
    lua_gc(L, LUA_GCSTOP);  /* no collections while building the state */
    lua_pushcfunction(L, pmain);
    lua_pushinteger(L, argc);
    lua_pushlightuserdata(L, argv);
    status = lua_pcall(L, 2, 1, 0);
    result = lua_toboolean(L, -1);
    cli_report(L, status);
    lua_close(L);
    return (result && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
}
