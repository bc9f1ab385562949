#ifndef LATCHKEY_CLIBPQ_SHIM_H
#define LATCHKEY_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#include <poll.h>

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
#endif
