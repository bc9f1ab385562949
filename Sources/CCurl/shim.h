#ifndef LATCHKEY_CCURL_SHIM_H
#define LATCHKEY_CCURL_SHIM_H
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Whether a connection to this address (4 bytes IPv4, 16 IPv6) may be
   opened for the `index`th POST of the batch: nonzero yes. Asked by libcurl for every address it is about to
   connect to, after its own name resolution, so the answer covers the
   address actually dialled (a name that resolves to a public address once
   and to a private one the next time gains nothing). */
typedef int (*lk_curl_admit)(const unsigned char *address, int length, int index, void *context);

/* One POST: its URL and body in; its HTTP status (0: none) and whether an
   address was refused out. */
struct lk_curl_post {
    const char *url;
    const char *body;
    long body_length;
    long status;
    int refused;
};

struct lk_curl_gate {
    lk_curl_admit admit;
    void *context;
    int index;
    int *refused;
};

static curl_socket_t lk_curl_open_socket(void *data, curlsocktype purpose, struct curl_sockaddr *address) {
    struct lk_curl_gate *gate = data;
    unsigned char bytes[16];
    int length = 0;
    (void)purpose;
    if (address->family == AF_INET) {
        memcpy(bytes, &((struct sockaddr_in *)&address->addr)->sin_addr, 4);
        length = 4;
    } else if (address->family == AF_INET6) {
        memcpy(bytes, &((struct sockaddr_in6 *)&address->addr)->sin6_addr, 16);
        length = 16;
    }
    if ((length == 4 && address->addrlen < sizeof(struct sockaddr_in)) || (length == 16 && address->addrlen < sizeof(struct sockaddr_in6))) length = 0;
    if (length == 0 || !gate->admit(bytes, length, gate->index, gate->context)) {
        *gate->refused = 1;
        return CURL_SOCKET_BAD;
    }
    return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

/* libcurl's global set-up, once, before any transfer (its implicit one in
   curl_easy_init is not safe while another thread does the same). */
static inline int lk_curl_global_init(void) { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1; }

static size_t lk_curl_discard(char *data, size_t size, size_t count, void *user) {
    (void)data; (void)user;
    return size * count;
}

/* POSTs every request of `posts` at once (application/x-www-form-urlencoded;
   http and https only, no redirect followed, no proxy from the environment,
   the answer's body discarded) and waits for all, `timeout_ms` at most each.
   0 when every transfer ran (each with its own outcome), -1 when libcurl
   could not be set up. */
static inline int lk_curl_post_all(struct lk_curl_post *posts, int count, long timeout_ms, lk_curl_admit admit, void *context) {
    CURLM *multi = curl_multi_init();
    CURL **easy = calloc((size_t)count, sizeof(CURL *));
    struct lk_curl_gate *gates = calloc((size_t)count, sizeof(struct lk_curl_gate));
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded");
    struct curl_slist *more = headers ? curl_slist_append(headers, "Expect:") : NULL;
    if (more == NULL) { curl_slist_free_all(headers); headers = NULL; } else headers = more;
    int failed = multi == NULL || easy == NULL || gates == NULL || headers == NULL;
    for (int i = 0; i < count && !failed; i++) {
        posts[i].status = 0;
        posts[i].refused = 0;
        gates[i] = (struct lk_curl_gate){ admit, context, i, &posts[i].refused };
        CURL *e = curl_easy_init();
        if (e == NULL) { failed = 1; break; }
        easy[i] = e;
        /* Every option is required: one the runtime library refuses (an older libcurl) fails the batch, never
           sends without the address check, the protocol limit or the proxy setting. */
        if (curl_easy_setopt(e, CURLOPT_URL, posts[i].url) != CURLE_OK
            || curl_easy_setopt(e, CURLOPT_POSTFIELDS, posts[i].body) != CURLE_OK
            || curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, posts[i].body_length) != CURLE_OK
            || curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers) != CURLE_OK
            || curl_easy_setopt(e, CURLOPT_USERAGENT, "Latchkey") != CURLE_OK
            || curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK
            || curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK
            || curl_easy_setopt(e, CURLOPT_NOPROXY, "*") != CURLE_OK
            || curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK
            || curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms) != CURLE_OK
            || curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms) != CURLE_OK
            /* A name whose DNS answers slowly must not hold the batch past its timeout (the threaded resolver
               is left to finish on its own instead of being waited for). */
            || curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L) != CURLE_OK
            || curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, lk_curl_open_socket) != CURLE_OK
            || curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, &gates[i]) != CURLE_OK
            || curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, lk_curl_discard) != CURLE_OK
            || curl_multi_add_handle(multi, e) != CURLM_OK) { failed = 1; break; }
    }
    if (!failed) {
        int running = 1;
        while (running > 0) {
            if (curl_multi_perform(multi, &running) != CURLM_OK) break;
            if (running > 0 && curl_multi_poll(multi, NULL, 0, 200, NULL) != CURLM_OK) break;
        }
        for (int i = 0; i < count; i++) curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &posts[i].status);
    }
    for (int i = 0; easy != NULL && i < count; i++) {
        if (easy[i] == NULL) continue;
        if (multi != NULL) curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    if (multi != NULL) curl_multi_cleanup(multi);
    curl_slist_free_all(headers);
    free(easy);
    free(gates);
    return failed ? -1 : 0;
}
#endif
