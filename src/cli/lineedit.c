/* Line input for the REPL: GNU readline (editing, history, completion) when
 * stdin is a terminal and readline was found, plain stdio otherwise. Piped
 * input (flame-lua -i < file) gets no prompts, so its output is just the
 * results and stays easy to check.
 *
 * Readline is driven through its callback interface rather than readline():
 * that lets Ctrl-C at the prompt discard the current input (and any pending
 * continuation lines) and give a fresh prompt instead of killing the process,
 * without longjmp'ing out of readline. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#ifdef FLAME_HAVE_READLINE
#include <readline/history.h>
#include <readline/readline.h>
#endif

#include "cli.h"

#define HISTORY_FILE ".flame_lua_history"
#define HISTORY_MAX 1000

static int interactive;  /* stdin is a terminal: show prompts */
static volatile sig_atomic_t got_sigint;
/* The self-pipe: a process-directed SIGINT may run its handler on any thread
 * that does not block it (OpenBLAS and OpenMP keep worker threads), where it
 * cannot interrupt the main thread's select; a byte in this pipe wakes it. */
static int wake_pipe[2] = {-1, -1};

static void on_sigint(int sig)
{
    int saved = errno;
    (void)sig;
    got_sigint = 1;
    if (wake_pipe[1] >= 0 && write(wake_pipe[1], "", 1) < 0) {
        /* full: a wake-up is already pending */
    }
    errno = saved;
}

static void open_wake_pipe(void)
{
    if (wake_pipe[0] >= 0 || pipe(wake_pipe) != 0) return;
    for (int i = 0; i < 2; i++) {
        fcntl(wake_pipe[i], F_SETFL, fcntl(wake_pipe[i], F_GETFL) | O_NONBLOCK);
        fcntl(wake_pipe[i], F_SETFD, FD_CLOEXEC);
    }
}

static void drain_wake_pipe(void)
{
    char buf[64];
    while (wake_pipe[0] >= 0 && read(wake_pipe[0], buf, sizeof buf) > 0) {
    }
}

/* Installed only while waiting for input; during execution call.c installs
 * its own handler that interrupts the running Lua code. */
static void set_signal(int sig, void (*handler)(int), struct sigaction *old)
{
    struct sigaction sa;
    sa.sa_handler = handler;
    sa.sa_flags = 0;  /* no SA_RESTART: the blocking read/select returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, old);
}

/* ---- plain stdio ---- */

static int stdio_read(const char *prompt, char **out)
{
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n;
    if (interactive) {
        fputs(prompt, stdout);
        fflush(stdout);
    }
    n = getline(&buf, &cap, stdin);
    if (n < 0) {
        free(buf);
        if (got_sigint) {
            clearerr(stdin);
            fputs("\n", stdout);
            return LINE_INTERRUPTED;
        }
        return LINE_EOF;
    }
    if (n > 0 && buf[n - 1] == '\n') buf[--n] = '\0';
    if (n > 0 && buf[n - 1] == '\r') buf[--n] = '\0';  /* CRLF input files */
    *out = buf;
    return LINE_OK;
}

/* ---- readline ---- */

#ifdef FLAME_HAVE_READLINE
static int use_readline;
static char *history_path;
static volatile sig_atomic_t got_sigwinch;
static char *rl_result;
static int rl_finished;

static void on_sigwinch(int sig)
{
    (void)sig;
    got_sigwinch = 1;
}

static void on_line(char *line)
{
    rl_result = line;  /* NULL on Ctrl-D */
    rl_finished = 1;
    rl_callback_handler_remove();
}

static int readline_read(const char *prompt, char **out)
{
    struct sigaction oldwinch;
    int fd = fileno(rl_instream ? rl_instream : stdin);
    int status = LINE_OK;
    set_signal(SIGWINCH, on_sigwinch, &oldwinch);
    rl_result = NULL;
    rl_finished = 0;
    rl_callback_handler_install(prompt, on_line);
    while (!rl_finished) {
        fd_set fds;
        int r, nfds = fd > wake_pipe[0] ? fd : wake_pipe[0];
        /* checked before every wait: a Ctrl-C may come at any point */
        if (got_sigint) {  /* drop the partial line and redraw on a new line */
            rl_free_line_state();
            rl_callback_sigcleanup();
            rl_callback_handler_remove();
            fputs("^C\n", rl_outstream ? rl_outstream : stdout);
            status = LINE_INTERRUPTED;
            break;
        }
        if (got_sigwinch) {
            got_sigwinch = 0;
            rl_resize_terminal();
        }
        FD_ZERO(&fds);
        FD_SET(fd, &fds);
        if (wake_pipe[0] >= 0) FD_SET(wake_pipe[0], &fds);
        r = select(nfds + 1, &fds, NULL, NULL, NULL);
        if (r < 0) {
            if (errno == EINTR) continue;
            rl_callback_handler_remove();
            status = LINE_EOF;
            break;
        }
        if (wake_pipe[0] >= 0 && FD_ISSET(wake_pipe[0], &fds)) drain_wake_pipe();
        if (FD_ISSET(fd, &fds)) rl_callback_read_char();
    }
    sigaction(SIGWINCH, &oldwinch, NULL);
    if (status == LINE_OK) {
        if (rl_result == NULL) return LINE_EOF;
        *out = rl_result;
    }
    return status;
}

static void history_open(void)
{
    const char *home = getenv("HOME");
    using_history();
    stifle_history(HISTORY_MAX);
#if RL_READLINE_VERSION >= 0x0800
    /* "#<time>" lines delimit entries, so multi-line chunks come back whole
     * (Lua lines never start with '#' and a digit) */
    history_comment_char = '#';
    history_write_timestamps = 1;
    history_multiline_entries = 1;
#endif
    if (home == NULL || *home == '\0') return;
    history_path = malloc(strlen(home) + sizeof("/" HISTORY_FILE));
    if (history_path == NULL) return;
    sprintf(history_path, "%s/%s", home, HISTORY_FILE);
    read_history(history_path);  /* best effort: a missing file is fine */
}
#endif

/* ---- interface ---- */

void line_init(lua_State *L, int is_tty)
{
    static int atexit_done;
    interactive = is_tty;
    if (is_tty) open_wake_pipe();
#ifdef FLAME_HAVE_READLINE
    if (is_tty && !use_readline) {
        use_readline = 1;
        rl_readline_name = "flame-lua";  /* for $if flame-lua in ~/.inputrc */
        /* readline's own handlers would catch a Ctrl-C that lands while it
         * handles a key and re-raise it only later: this file handles SIGINT
         * and SIGWINCH itself */
        rl_catch_signals = 0;
        rl_catch_sigwinch = 0;
        complete_install(L);
        history_open();
    }
#else
    (void)L;
#endif
    /* os.exit() from the REPL skips line_close's normal call */
    if (!atexit_done) {
        atexit_done = 1;
        atexit(line_close);
    }
}

int line_read(const char *prompt, char **out)
{
    struct sigaction oldint;
    int status;
    *out = NULL;
    got_sigint = 0;
    drain_wake_pipe();  /* a Ctrl-C from before this prompt is not for it */
    if (interactive) set_signal(SIGINT, on_sigint, &oldint);
#ifdef FLAME_HAVE_READLINE
    if (use_readline)
        status = readline_read(prompt, out);
    else
#endif
        status = stdio_read(prompt, out);
    if (interactive) sigaction(SIGINT, &oldint, NULL);
    return status;
}

void line_save(const char *chunk)
{
#ifdef FLAME_HAVE_READLINE
    HIST_ENTRY *last;
    if (!use_readline || chunk[0] == '\0') return;
    last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
    if (last && strcmp(last->line, chunk) == 0) return;  /* no repeats */
    add_history(chunk);
#else
    (void)chunk;
#endif
}

void line_close(void)
{
#ifdef FLAME_HAVE_READLINE
    if (history_path) {
        write_history(history_path);  /* best effort */
        free(history_path);
        history_path = NULL;
    }
#endif
}
