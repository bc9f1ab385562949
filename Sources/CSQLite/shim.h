#ifndef LATCHKEY_CSQLITE_SHIM_H
#define LATCHKEY_CSQLITE_SHIM_H
#include <sqlite3.h>

/* SQLITE_TRANSIENT is a cast macro Swift cannot import; it tells SQLite to
   copy bound bytes before the call returns, so no Swift buffer is retained. */
static inline sqlite3_destructor_type lk_sqlite_transient(void) {
    return SQLITE_TRANSIENT;
}
#endif
