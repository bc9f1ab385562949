#ifndef LATCHKEY_CLIBPQ_SHIM_H
#define LATCHKEY_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>

/* The PG_DIAG_* fields are char-literal macros Swift does not import. */
static const int LK_PG_DIAG_SQLSTATE = PG_DIAG_SQLSTATE;
static const int LK_PG_DIAG_MESSAGE_PRIMARY = PG_DIAG_MESSAGE_PRIMARY;

/* libpq prints NOTICE and WARNING messages on stderr unless a receiver is
   set; the wrapper reports what matters through results, so drop them. */
static void lk_pq_ignore_notice(void *arg, const PGresult *res) { (void)arg; (void)res; }
static inline void lk_pq_silence_notices(PGconn *conn) { PQsetNoticeReceiver(conn, lk_pq_ignore_notice, NULL); }

/* Waits until the connection's socket is readable or `millis` pass:
   1 readable, 0 timed out, -1 error. A hung server never blocks a worker
   past its deadline (PQexec would wait forever). */
static inline int lk_pq_wait_readable(PGconn *conn, int millis) {
    struct pollfd p = { .fd = PQsocket(conn), .events = POLLIN, .revents = 0 };
    if (p.fd < 0) return -1;
    int n = poll(&p, 1, millis);
    return n < 0 ? -1 : (n == 0 ? 0 : 1);
}

/* Asks the server to cancel what `conn` runs, from a detached thread:
   PQcancel opens a connection of its own and, to a network that no longer
   answers, waits out the system's connect timeout, which a worker must not.
   0: the request is on its way. */
static void *lk_pq_cancel_thread(void *cancel) {
    char error[256];
    PQcancel((PGcancel *)cancel, error, (int)sizeof error);
    PQfreeCancel((PGcancel *)cancel);
    return NULL;
}
static inline int lk_pq_cancel_detached(PGconn *conn) {
    PGcancel *cancel = PQgetCancel(conn);
    if (cancel == NULL) return -1;
    pthread_attr_t attributes;
    pthread_t thread;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    int failed = pthread_create(&thread, &attributes, lk_pq_cancel_thread, cancel);
    pthread_attr_destroy(&attributes);
    if (failed) { PQfreeCancel(cancel); return -1; }
    return 0;
}
#endif
