#ifndef LATCHKEY_CFASTCGI_SHIM_H
#define LATCHKEY_CFASTCGI_SHIM_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcgiapp.h>
#include <sys/socket.h>
#include <errno.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

/* An epoll instance for one worker thread: the shared listening socket and
   the nudge eventfd with EPOLLEXCLUSIVE (each wakes one sleeping thread, not
   all) and the pool's stop eventfd (wakes every thread). -1 on failure.
   In C because struct epoll_event is packed on x86-64. */
static inline int lk_epoll_for_worker(int listen_fd, int stop_fd, int nudge_fd) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) return -1;
    struct epoll_event listen_event = { .events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = listen_fd };
    struct epoll_event stop_event = { .events = EPOLLIN, .data.fd = stop_fd };
    struct epoll_event nudge_event = { .events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = nudge_fd };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &listen_event) != 0 || epoll_ctl(ep, EPOLL_CTL_ADD, stop_fd, &stop_event) != 0
        || epoll_ctl(ep, EPOLL_CTL_ADD, nudge_fd, &nudge_event) != 0) {
        int saved = errno;
        close(ep);
        errno = saved;
        return -1;
    }
    return ep;
}

/* Sleeps until the listening socket, the stop eventfd or the nudge eventfd
   is ready, or timeout_ms passes (-1: no limit): 1 when the pool stops, 0
   to look for work again, -1 on error (errno). A nudge is consumed here
   (the eventfd is non-blocking: another thread may have consumed it). */
static inline int lk_epoll_sleep(int ep, int stop_fd, int nudge_fd, int timeout_ms) {
    struct epoll_event events[3];
    int n = epoll_wait(ep, events, 3, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -1;
    for (int i = 0; i < n; i++) {
        if (events[i].data.fd == stop_fd) return 1;
        if (events[i].data.fd == nudge_fd) {
            uint64_t count;
            (void)!read(nudge_fd, &count, sizeof count);
        }
    }
    return 0;
}

/* accept4 (a GNU extension) with close-on-exec; the new socket blocks, as libfcgi expects. */
static inline int lk_accept(int listen_fd) { return accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC); }

static inline int lk_eventfd(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }
#endif
