#ifndef LATCHKEY_CFASTCGI_SHIM_H
#define LATCHKEY_CFASTCGI_SHIM_H
#include <fcgiapp.h>
#include <sys/socket.h>
#include <errno.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <netinet/in.h>
#include <string.h>

/* An epoll instance for one worker thread: the shared listening socket with
   EPOLLEXCLUSIVE (a new connection wakes one sleeping thread, not all), the
   pool's stop eventfd (wakes every thread, for good) and its nudge eventfd,
   edge-triggered and never read: each write is one event for every thread
   (a thread that read it would hide it from the others, which re-check a
   level-triggered fd before they return). -1 on failure. In C because
   struct epoll_event is packed on x86-64. */
static inline int lk_epoll_for_worker(int listen_fd, int stop_fd, int nudge_fd) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) return -1;
    struct epoll_event listen_event = { .events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = listen_fd };
    struct epoll_event stop_event = { .events = EPOLLIN, .data.fd = stop_fd };
    struct epoll_event nudge_event = { .events = EPOLLIN | EPOLLET, .data.fd = nudge_fd };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &listen_event) != 0 || epoll_ctl(ep, EPOLL_CTL_ADD, stop_fd, &stop_event) != 0
        || epoll_ctl(ep, EPOLL_CTL_ADD, nudge_fd, &nudge_event) != 0) {
        int saved = errno;
        close(ep);
        errno = saved;
        return -1;
    }
    return ep;
}

/* Sleeps until the listening socket is ready, the pool stops, a nudge
   comes, or timeout_ms passes (-1: no limit): 1 when the pool stops, 0 to
   look for work again, -1 on error (errno). */
static inline int lk_epoll_sleep(int ep, int stop_fd, int timeout_ms) {
    struct epoll_event events[3];
    int n = epoll_wait(ep, events, 3, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -1;
    for (int i = 0; i < n; i++) if (events[i].data.fd == stop_fd) return 1;
    return 0;
}

/* accept4 (Linux, glibc >= 2.10) is declared by <sys/socket.h> only under
   _GNU_SOURCE, which this module must not define: it changes fd_set and
   clashes with the Glibc module Swift imports. Declared here instead. */
extern int accept4(int fd, struct sockaddr *addr, socklen_t *addr_len, int flags);

/* accept4 with close-on-exec; the new socket blocks, as libfcgi expects. */
static inline int lk_accept(int listen_fd) { return accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC); }

/* lk_accept that also says who connected: the peer's IPv4 (4 bytes) or
   IPv6 (16 bytes) address in `address`, its length in `*length` (0 for a
   unix socket's peer or any other family). */
static inline int lk_accept_peer(int listen_fd, unsigned char address[16], int *length) {
    struct sockaddr_storage peer;
    socklen_t size = sizeof peer;
    int fd = accept4(listen_fd, (struct sockaddr *)&peer, &size, SOCK_CLOEXEC);
    *length = 0;
    if (fd < 0) return fd;
    if (peer.ss_family == AF_INET) {
        memcpy(address, &((struct sockaddr_in *)&peer)->sin_addr, 4);
        *length = 4;
    } else if (peer.ss_family == AF_INET6) {
        memcpy(address, &((struct sockaddr_in6 *)&peer)->sin6_addr, 16);
        *length = 16;
    }
    return fd;
}

static inline int lk_eventfd(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }
#endif
