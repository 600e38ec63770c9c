/* flame-lua --nproc N [--nnodes M --node-rank R --master-addr A --master-port P] script.lua [args]:
 * the multi-process launcher (as torchrun). It starts N copies of this executable running the script, one per
 * local GPU, with RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, NODE_RANK, MASTER_ADDR and MASTER_PORT set and
 * the rest of the environment passed through unchanged. Each rank's output lines are prefixed with "[rank R] ".
 * When one rank fails (a non-zero exit or a signal), the others are stopped (SIGTERM, then SIGKILL after a grace
 * period) and the launcher exits with the failure's status; it forwards SIGINT and SIGTERM to the ranks.
 * Spanning machines: run one launcher per machine with the same --nnodes, --master-addr and --master-port and its
 * own --node-rank; rank 0 (node 0) hosts the rendezvous (src/dist/rendezvous.c). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "flame.h"

#define MAX_PROCS 256
#define LINE_MAX_BYTES 65536
#define GRACE_SECONDS 5

typedef struct {
  pid_t pid;
  int fd[2];       /* stdout, stderr pipes (-1 once closed) */
  char *buf[2];    /* a partial line per stream */
  size_t len[2];
  int rank;
  int status;      /* wait status, valid once exited */
  int exited;
} child;

typedef struct {
  int nproc, nnodes, node_rank, port;
  const char *addr;
  int script; /* index in argv of the script */
} launch_opts;

static volatile sig_atomic_t got_signal;
static void on_signal(int sig) { got_signal = sig; }

static int usage(const char *msg, const char *arg) {
  fprintf(stderr, "%s: %s%s%s\n", FLAME_CLI_NAME, msg, arg ? " " : "", arg ? arg : "");
  fprintf(stderr, "usage: %s --nproc N [--nnodes M] [--node-rank R] [--master-addr A] [--master-port P] "
                  "script.lua [args]\n", FLAME_CLI_NAME);
  return 2;
}

static int parse_int(const char *s, int lo, int hi, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return 0;
  *out = (int)v;
  return 1;
}

/* Options come first, each "--name value" or "--name=value"; the first other word is the script. */
static int parse(int argc, char **argv, launch_opts *o) {
  *o = (launch_opts){.nproc = 0, .nnodes = 1, .node_rank = 0, .port = 29500, .addr = "127.0.0.1", .script = 0};
  const char *env_addr = getenv("MASTER_ADDR"), *env_port = getenv("MASTER_PORT");
  if (env_addr && *env_addr) o->addr = env_addr;
  if (env_port && !parse_int(env_port, 1, 65535, &o->port)) return usage("MASTER_PORT is not a port:", env_port);
  int i = 1;
  for (; i < argc && strncmp(argv[i], "--", 2) == 0 && argv[i][2]; i++) {
    char name[32];
    const char *val = strchr(argv[i], '=');
    size_t n = val ? (size_t)(val - argv[i]) : strlen(argv[i]);
    if (n >= sizeof name) return usage("unknown option", argv[i]);
    memcpy(name, argv[i], n);
    name[n] = 0;
    if (val) val++;
    else if (i + 1 < argc) val = argv[++i];
    else return usage("option needs a value:", name);
    int ok = 1;
    if (!strcmp(name, "--nproc") || !strcmp(name, "--nproc-per-node")) ok = parse_int(val, 1, MAX_PROCS, &o->nproc);
    else if (!strcmp(name, "--nnodes")) ok = parse_int(val, 1, 65536, &o->nnodes);
    else if (!strcmp(name, "--node-rank")) ok = parse_int(val, 0, 65535, &o->node_rank);
    else if (!strcmp(name, "--master-port")) ok = parse_int(val, 1, 65535, &o->port);
    else if (!strcmp(name, "--master-addr")) o->addr = val;
    else return usage("unknown option", name);
    if (!ok) return usage("bad value for", name);
  }
  if (o->nproc < 1) return usage("--nproc N is required", NULL);
  if (o->node_rank >= o->nnodes) return usage("--node-rank must be below --nnodes", NULL);
  if ((long)o->nproc * o->nnodes > INT_MAX / 2) return usage("too many processes", NULL);
  if (i >= argc) return usage("no script given", NULL);
  o->script = i;
  return 0;
}

static void set_env_int(const char *name, int v) {
  char s[32];
  snprintf(s, sizeof s, "%d", v);
  setenv(name, s, 1);
}

/* In the child: the rank's environment, stdout/stderr onto the pipes, then this executable on the script. */
static void exec_rank(const launch_opts *o, int local, int out[2], int err[2], char **argv) {
  set_env_int("RANK", o->node_rank * o->nproc + local);
  set_env_int("WORLD_SIZE", o->nproc * o->nnodes);
  set_env_int("LOCAL_RANK", local);
  set_env_int("LOCAL_WORLD_SIZE", o->nproc);
  set_env_int("NODE_RANK", o->node_rank);
  set_env_int("MASTER_PORT", o->port);
  setenv("MASTER_ADDR", o->addr, 1);
  setpgid(0, 0); /* its own process group: stopping a rank stops what it started too */
  dup2(out[1], STDOUT_FILENO);
  dup2(err[1], STDERR_FILENO);
  close(out[0]), close(out[1]), close(err[0]), close(err[1]);
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  argv[o->script - 1] = (char *)FLAME_CLI_NAME; /* argv[0] of the rank: flame-lua script args */
  execv("/proc/self/exe", argv + o->script - 1);
  fprintf(stderr, "%s: cannot start a rank: %s\n", FLAME_CLI_NAME, strerror(errno));
  _exit(127);
}

/* Writes the complete lines of c's stream s with the rank prefix; at EOF (flush) the rest too. */
static void emit(child *c, int s, int flush) {
  FILE *f = s == 0 ? stdout : stderr;
  size_t start = 0;
  for (size_t i = 0; i < c->len[s]; i++)
    if (c->buf[s][i] == '\n') {
      fprintf(f, "[rank %d] %.*s\n", c->rank, (int)(i - start), c->buf[s] + start);
      start = i + 1;
    }
  if (flush && start < c->len[s]) fprintf(f, "[rank %d] %.*s\n", c->rank, (int)(c->len[s] - start), c->buf[s] + start), start = c->len[s];
  if (start == 0 && c->len[s] == LINE_MAX_BYTES) { /* an over-long line goes out in pieces */
    fprintf(f, "[rank %d] %.*s\n", c->rank, (int)c->len[s], c->buf[s]);
    start = c->len[s];
  }
  memmove(c->buf[s], c->buf[s] + start, c->len[s] - start);
  c->len[s] -= start;
  fflush(f);
}

static void drain(child *c, int s) {
  ssize_t n = read(c->fd[s], c->buf[s] + c->len[s], LINE_MAX_BYTES - c->len[s]);
  if (n > 0) {
    c->len[s] += (size_t)n;
    emit(c, s, 0);
    return;
  }
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  emit(c, s, 1);
  close(c->fd[s]);
  c->fd[s] = -1;
}

static void signal_all(child *cs, int n, int sig) {
  for (int i = 0; i < n; i++)
    if (cs[i].pid > 0) kill(-cs[i].pid, sig); /* the rank's group, which outlives an exited rank's helpers */
}

static int failed(int status) { return !WIFEXITED(status) || WEXITSTATUS(status) != 0; }

/* Exit status the launcher reports for a rank's wait status: its exit code, or 128 + the signal. */
static int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

/* Reaps exited ranks; returns the index of the first failure seen now, or -1. */
static int reap(child *cs, int n) {
  int fail = -1, st;
  for (int i = 0; i < n; i++) {
    if (cs[i].exited || cs[i].pid <= 0) continue;
    pid_t r = waitpid(cs[i].pid, &st, WNOHANG);
    if (r != cs[i].pid) continue;
    cs[i].exited = 1, cs[i].status = st;
    if (failed(st) && fail < 0) fail = i;
  }
  return fail;
}

/* Pumps output and watches the ranks until all have exited. */
static int supervise(child *cs, int n) {
  int first_fail = -1, live_fds = 2 * n, stopping = 0, quiet_rounds = 0;
  double stop_at = 0;
  struct pollfd *p = calloc((size_t)(2 * n), sizeof *p);
  if (!p) return 1;
  for (;;) {
    int f = reap(cs, n);
    if (f >= 0 && first_fail < 0) first_fail = f;
    if ((first_fail >= 0 || got_signal) && !stopping) {
      if (first_fail >= 0)
        fprintf(stderr, "%s: rank %d failed (exit %d): stopping the other ranks\n", FLAME_CLI_NAME,
                cs[first_fail].rank, exit_code(cs[first_fail].status));
      signal_all(cs, n, got_signal ? got_signal : SIGTERM);
      stopping = 1, stop_at = fl_now_s() + GRACE_SECONDS;
    }
    if (stopping && fl_now_s() > stop_at) signal_all(cs, n, SIGKILL);
    int alive = 0;
    for (int i = 0; i < n; i++) alive += !cs[i].exited;
    if (!alive && (live_fds == 0 || quiet_rounds > 2)) break; /* a rank's leftover child may hold a pipe open */
    int k = 0;
    for (int i = 0; i < n; i++)
      for (int s = 0; s < 2; s++)
        if (cs[i].fd[s] >= 0) p[k++] = (struct pollfd){.fd = cs[i].fd[s], .events = POLLIN};
    if (k == 0) { /* outputs closed, ranks still running: wait for them */
      struct timespec ts = {0, 20000000};
      nanosleep(&ts, NULL);
      continue;
    }
    int r = poll(p, (nfds_t)k, 100);
    if (r < 0 && errno != EINTR) break;
    quiet_rounds = (r == 0 && !alive) ? quiet_rounds + 1 : 0;
    k = 0;
    for (int i = 0; i < n; i++)
      for (int s = 0; s < 2; s++)
        if (cs[i].fd[s] >= 0) {
          if (r > 0 && (p[k].revents & (POLLIN | POLLHUP | POLLERR))) drain(&cs[i], s);
          if (cs[i].fd[s] < 0) live_fds--;
          k++;
        }
  }
  free(p);
  if (first_fail >= 0) return exit_code(cs[first_fail].status);
  for (int i = 0; i < n; i++)
    if (failed(cs[i].status)) return exit_code(cs[i].status);
  return got_signal ? 128 + got_signal : 0;
}

int cli_launch(int argc, char **argv) {
  launch_opts o;
  int bad = parse(argc, argv, &o);
  if (bad) return bad;
  child *cs = calloc((size_t)o.nproc, sizeof *cs);
  if (!cs) return 1;
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  int n = 0, status = 0;
  for (; n < o.nproc; n++) {
    child *c = &cs[n];
    int out[2], err[2];
    c->rank = o.node_rank * o.nproc + n;
    c->buf[0] = malloc(LINE_MAX_BYTES), c->buf[1] = malloc(LINE_MAX_BYTES);
    if (!c->buf[0] || !c->buf[1] || pipe(out) != 0) break;
    if (pipe(err) != 0) {
      close(out[0]), close(out[1]);
      break;
    }
    fflush(stdout), fflush(stderr);
    c->pid = fork();
    if (c->pid == 0) exec_rank(&o, n, out, err, argv);
    close(out[1]), close(err[1]);
    c->fd[0] = out[0], c->fd[1] = err[0];
    if (c->pid < 0) {
      close(out[0]), close(err[0]);
      break;
    }
  }
  if (n < o.nproc) { /* could not start them all: stop those that run */
    fprintf(stderr, "%s: cannot start rank %d: %s\n", FLAME_CLI_NAME, n, strerror(errno));
    signal_all(cs, n, SIGTERM);
    for (int i = 0; i < n; i++) waitpid(cs[i].pid, NULL, 0);
    status = 1;
  } else {
    status = supervise(cs, n);
  }
  for (int i = 0; i < o.nproc; i++) free(cs[i].buf[0]), free(cs[i].buf[1]);
  free(cs);
  return status;
}
