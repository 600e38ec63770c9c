/* The rendezvous of flame.distributed: how the ranks of a job find each other before NCCL can. Rank 0 listens
 * on MASTER_ADDR:MASTER_PORT; every other rank connects (retrying while rank 0 is not up yet) and says who it is;
 * when all world - 1 have checked in, rank 0 sends each its blob (NCCL's unique id) and waits for every
 * acknowledgement, so the call is also a barrier. Everything runs under one deadline: a missing or dead peer is
 * an error naming who was missing, never a hang.
 *
 * Wire format (all integers big-endian u32): hello = "FLRV", rank, world, blob size; reply = blob; ack = 1 byte. */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define OP "distributed.init"

static int ms_left(double deadline) {
  double l = deadline - fl_now_s();
  return l <= 0 ? 0 : l > 1e6 ? 1000000000 : (int)(l * 1000) + 1;
}

/* Reads or writes all n bytes of fd before the deadline. */
static fl_status io_all(int fd, void *buf, size_t n, bool write_, double deadline, const char *what) {
  char *p = buf;
  while (n > 0) {
    struct pollfd pf = {fd, write_ ? POLLOUT : POLLIN, 0};
    int r = poll(&pf, 1, ms_left(deadline));
    if (r == 0) return fl_error(FL_EBACKEND, OP ": timed out %s", what);
    if (r < 0) {
      if (errno == EINTR) continue;
      return fl_error(FL_EBACKEND, OP ": %s: %s", what, strerror(errno));
    }
    ssize_t k = write_ ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
    if (k == 0) return fl_error(FL_EBACKEND, OP ": %s: the peer closed the connection", what);
    if (k < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return fl_error(FL_EBACKEND, OP ": %s: %s", what, strerror(errno));
    }
    p += k, n -= (size_t)k;
  }
  return FL_OK;
}

static fl_status resolve(const char *addr, int port, struct addrinfo **res) {
  char ps[16];
  snprintf(ps, sizeof ps, "%d", port);
  struct addrinfo hints = {0};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int e = getaddrinfo(addr, ps, &hints, res);
  if (e) return fl_error(FL_EINVAL, OP ": cannot resolve MASTER_ADDR %s: %s", addr, gai_strerror(e));
  return FL_OK;
}

static void put_u32(unsigned char *p, uint32_t v) {
  uint32_t b = htonl(v);
  memcpy(p, &b, 4);
}
static uint32_t get_u32(const unsigned char *p) {
  uint32_t b;
  memcpy(&b, p, 4);
  return ntohl(b);
}

/* ---- rank 0 ---- */

static fl_status listen_on(const char *addr, int port, int *out) {
  *out = -1;
  struct addrinfo *res;
  FL_TRY(resolve(addr, port, &res));
  int fd = -1, err = 0;
  for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 128) != 0) {
      err = errno;
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd < 0) return fl_error(FL_EBACKEND, OP ": rank 0 cannot listen on %s:%d: %s", addr, port, strerror(err));
  *out = fd;
  return FL_OK;
}

/* Accepts one hello; *rank gets the peer's rank, checked against the job. */
static fl_status accept_peer(int lfd, int world, size_t n, double deadline, int *cfd, int *rank, const int *seen) {
  struct pollfd pf = {lfd, POLLIN, 0};
  int r;
  while ((r = poll(&pf, 1, ms_left(deadline))) < 0 && errno == EINTR) {
  }
  if (r == 0) return fl_error(FL_EBACKEND, OP ": timed out");
  int fd = accept(lfd, NULL, NULL);
  if (fd < 0) return fl_error(FL_EBACKEND, OP ": accept: %s", strerror(errno));
  unsigned char h[16];
  fl_status st = io_all(fd, h, sizeof h, false, deadline, "reading a rank's hello");
  uint32_t pr = get_u32(h + 4), pw = get_u32(h + 8), pn = get_u32(h + 12);
  if (st == FL_OK && memcmp(h, "FLRV", 4) != 0)
    st = fl_error(FL_EBACKEND, OP ": a connection to MASTER_PORT that is not a flame rank");
  else if (st == FL_OK && (pw != (uint32_t)world || pn != n))
    st = fl_error(FL_EINVAL, OP ": rank %u says WORLD_SIZE %u, rank 0 has %d: the ranks disagree on the job", pr, pw,
                  world);
  else if (st == FL_OK && (pr == 0 || pr >= (uint32_t)world || seen[pr]))
    st = fl_error(FL_EINVAL, OP ": a second rank %u (or one outside 0..%d) checked in", pr, world - 1);
  if (st != FL_OK) {
    close(fd);
    return st;
  }
  *cfd = fd, *rank = (int)pr;
  return FL_OK;
}

static void missing_list(const int *seen, int world, char *buf, size_t cap) {
  size_t at = 0;
  buf[0] = 0;
  for (int r = 1; r < world && at + 16 < cap; r++)
    if (!seen[r]) at += (size_t)snprintf(buf + at, cap - at, "%s%d", at ? ", " : "", r);
}

static fl_status serve(const char *addr, int port, int world, const void *blob, size_t n, double deadline) {
  int lfd = -1, *fds = calloc((size_t)world, sizeof *fds), *seen = calloc((size_t)world, sizeof *seen);
  fl_status st = FL_OK;
  if (!fds || !seen) {
    free(fds), free(seen);
    return fl_error(FL_ENOMEM, OP ": out of host memory");
  }
  st = listen_on(addr, port, &lfd);
  if (st != FL_OK) {
    free(fds), free(seen);
    return st;
  }
  for (int got = 1; got < world && st == FL_OK; got++) {
    int fd = -1, r = 0;
    st = accept_peer(lfd, world, n, deadline, &fd, &r, seen);
    if (st == FL_OK) fds[r] = fd, seen[r] = 1;
  }
  if (st != FL_OK && ms_left(deadline) == 0) { /* timed out: say who is missing */
    char miss[256];
    missing_list(seen, world, miss, sizeof miss);
    if (miss[0]) st = fl_error(FL_EBACKEND, OP ": rank 0 waited at %s:%d for ranks that never came: %s", addr, port, miss);
  }
  for (int r = 1; r < world && st == FL_OK; r++) st = io_all(fds[r], (void *)blob, n, true, deadline, "sending the id");
  for (int r = 1; r < world && st == FL_OK; r++) {
    unsigned char ack;
    st = io_all(fds[r], &ack, 1, false, deadline, "waiting for a rank's acknowledgement");
  }
  for (int r = 1; r < world; r++)
    if (fds[r] > 0) close(fds[r]);
  close(lfd);
  free(fds), free(seen);
  return st;
}

/* ---- the other ranks ---- */

static fl_status connect_to(const char *addr, int port, double deadline, int *out) {
  int err = 0;
  while (fl_now_s() < deadline) { /* rank 0 may not be listening yet */
    struct addrinfo *res;
    FL_TRY(resolve(addr, port, &res));
    for (struct addrinfo *a = res; a; a = a->ai_next) {
      int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
      if (fd < 0) continue;
      if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
        freeaddrinfo(res);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        *out = fd;
        return FL_OK;
      }
      err = errno;
      close(fd);
    }
    freeaddrinfo(res);
    struct timespec ts = {0, 50000000};
    nanosleep(&ts, NULL);
  }
  return fl_error(FL_EBACKEND, OP ": cannot reach rank 0 at %s:%d (MASTER_ADDR:MASTER_PORT): %s", addr, port,
                  err ? strerror(err) : "timed out");
}

static fl_status join(const char *addr, int port, int rank, int world, void *blob, size_t n, double deadline) {
  int fd = -1;
  FL_TRY(connect_to(addr, port, deadline, &fd));
  unsigned char h[16];
  memcpy(h, "FLRV", 4);
  put_u32(h + 4, (uint32_t)rank), put_u32(h + 8, (uint32_t)world), put_u32(h + 12, (uint32_t)n);
  fl_status st = io_all(fd, h, sizeof h, true, deadline, "sending the hello");
  if (st == FL_OK) st = io_all(fd, blob, n, false, deadline, "waiting for rank 0 (are all ranks started?)");
  unsigned char ack = 1;
  if (st == FL_OK) st = io_all(fd, &ack, 1, true, deadline, "acknowledging");
  close(fd);
  return st;
}

fl_status fl_free_port(const char *addr, int *port) {
  *port = 0;
  struct addrinfo *res;
  FL_TRY(resolve(addr, 0, &res));
  int err = 0;
  for (struct addrinfo *a = res; a && !*port; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      err = errno;
      continue;
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
      *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                              : ((struct sockaddr_in *)&ss)->sin_port);
    else
      err = errno;
    close(fd);
  }
  freeaddrinfo(res);
  if (!*port) return fl_error(FL_EBACKEND, "distributed: no free port on %s: %s", addr, strerror(err));
  return FL_OK;
}

fl_status fl_rendezvous(const char *addr, int port, int rank, int world, void *blob, size_t n, double timeout_s) {
  if (world < 1 || rank < 0 || rank >= world)
    return fl_error(FL_EINVAL, OP ": RANK %d must be in 0..WORLD_SIZE-1 (WORLD_SIZE %d)", rank, world);
  if (port < 1 || port > 65535) return fl_error(FL_EINVAL, OP ": MASTER_PORT %d is not a port", port);
  if (n > 1u << 20) return fl_error(FL_EINVAL, OP ": a %zu-byte blob is too large", n);
  if (world == 1) return FL_OK;
  double deadline = fl_now_s() + (timeout_s > 0 ? timeout_s : 300);
  return rank == 0 ? serve(addr, port, world, blob, n, deadline) : join(addr, port, rank, world, blob, n, deadline);
}
