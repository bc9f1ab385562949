#ifndef LATCHKEY_CCURL_SHIM_H
#define LATCHKEY_CCURL_SHIM_H
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* Whether a connection to this address (4 bytes IPv4, 16 IPv6) may be
   opened for a POST whose `flag` (the caller's, given when it was started)
   is this: nonzero yes. Asked by libcurl for every address it is about to
   connect to, after its own name resolution, so the answer covers the
   address actually dialled (a name that resolves to a public address once
   and to a private one the next time gains nothing). */
typedef int (*lk_curl_admit)(const unsigned char *address, int length, int flag, void *context);

struct lk_curl_slot {
    CURL *easy;
    long long tag;
    int flag;
    int refused;
    struct lk_curl_queue *queue;
};

/* POSTs in flight, each finished on its own (application/x-www-form-urlencoded;
   http and https only, no redirect followed, no proxy from the environment,
   the answer's body discarded, its own timeout): a slot is free again as soon
   as its transfer ends, so a receiver that never answers holds one slot for
   its timeout, not everyone's. One thread's. */
struct lk_curl_queue {
    CURLM *multi;
    struct curl_slist *headers;
    lk_curl_admit admit;
    void *context;
    int capacity;
    int busy;
    struct lk_curl_slot *slots;
};

static curl_socket_t lk_curl_open_socket(void *data, curlsocktype purpose, struct curl_sockaddr *address) {
    struct lk_curl_slot *slot = data;
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
    if (length == 0 || !slot->queue->admit(bytes, length, slot->flag, slot->queue->context)) {
        slot->refused = 1;
        return CURL_SOCKET_BAD;
    }
    return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

/* libcurl's global set-up, once, before any transfer (its implicit one in
   curl_easy_init is not safe while another thread does the same). */
static inline int lk_curl_global_init(void) { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1; }

/* The answer's body is never wanted (its status is known by then): the
   transfer ends at its first byte, so a receiver that streams a body cannot
   hold a slot for the whole timeout. */
static size_t lk_curl_discard(char *data, size_t size, size_t count, void *user) {
    (void)data; (void)size; (void)count; (void)user;
    return 0;
}

static inline void lk_curl_queue_free(struct lk_curl_queue *q) {
    if (q == NULL) return;
    for (int i = 0; q->slots != NULL && i < q->capacity; i++) {
        if (q->slots[i].easy == NULL) continue;
        if (q->multi != NULL) curl_multi_remove_handle(q->multi, q->slots[i].easy);
        curl_easy_cleanup(q->slots[i].easy);
    }
    if (q->multi != NULL) curl_multi_cleanup(q->multi);
    curl_slist_free_all(q->headers);
    free(q->slots);
    free(q);
}

/* A queue of `capacity` slots whose connections `admit` vets; NULL when libcurl cannot be set up. */
static inline struct lk_curl_queue *lk_curl_queue_new(int capacity, lk_curl_admit admit, void *context) {
    struct lk_curl_queue *q = calloc(1, sizeof *q);
    if (q == NULL || capacity < 1) { free(q); return NULL; }
    q->capacity = capacity;
    q->admit = admit;
    q->context = context;
    q->slots = calloc((size_t)capacity, sizeof(struct lk_curl_slot));
    q->multi = curl_multi_init();
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded");
    struct curl_slist *more = headers ? curl_slist_append(headers, "Expect:") : NULL;
    q->headers = more ? more : headers;
    if (q->slots == NULL || q->multi == NULL || more == NULL) { lk_curl_queue_free(q); return NULL; }
    return q;
}

static inline int lk_curl_queue_busy(const struct lk_curl_queue *q) { return q->busy; }

/* Starts a POST in a free slot: 0, or -1 when every slot is taken or the
   transfer could not be set up (nothing is sent then). `body` is copied. */
static inline int lk_curl_queue_start(struct lk_curl_queue *q, const char *url, const char *body, long body_length, long timeout_ms,
                                      int flag, long long tag) {
    int i = 0;
    while (i < q->capacity && q->slots[i].easy != NULL) i++;
    if (i == q->capacity) return -1;
    struct lk_curl_slot *slot = &q->slots[i];
    CURL *e = curl_easy_init();
    if (e == NULL) return -1;
    *slot = (struct lk_curl_slot){ e, tag, flag, 0, q };
    /* Every option is required: one the runtime library refuses (an older libcurl) fails the POST, never
       sends it without the address check, the protocol limit or the proxy setting. */
    if (curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, body_length) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_HTTPHEADER, q->headers) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_USERAGENT, "Latchkey") != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_NOPROXY, "*") != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms) != CURLE_OK
        /* A name whose DNS answers slowly must not hold a slot past its timeout (the threaded resolver
           is left to finish on its own instead of being waited for). */
        || curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L) != CURLE_OK
        /* A connection is never reused: the admission check runs when a socket is opened, and a connection
           opened for one POST (an operator-allowed address, for a client the operator manages) must not carry
           another's (an anonymously registered client naming the same host). */
        || curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, lk_curl_open_socket) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, slot) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, lk_curl_discard) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_PRIVATE, slot) != CURLE_OK
        || curl_multi_add_handle(q->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        slot->easy = NULL;
        return -1;
    }
    q->busy++;
    /* Under way at once: its timeout runs from now, not from the caller's next look. */
    int running = 0;
    curl_multi_perform(q->multi, &running);
    return 0;
}

/* Ends a slot's transfer and frees the slot. */
static inline void lk_curl_slot_release(struct lk_curl_queue *q, struct lk_curl_slot *slot) {
    curl_multi_remove_handle(q->multi, slot->easy);
    curl_easy_cleanup(slot->easy);
    slot->easy = NULL;
    q->busy--;
}

/* Reports a slot's transfer as ended with `status` into the arrays at `*done`, then frees the slot. */
static inline void lk_curl_slot_report(struct lk_curl_queue *q, struct lk_curl_slot *slot, long status, long long *tags, long *statuses,
                                       int *refused, int *done) {
    tags[*done] = slot->tag;
    statuses[*done] = status;
    refused[*done] = slot->refused;
    (*done)++;
    lk_curl_slot_release(q, slot);
}

/* Milliseconds on the monotonic clock. */
static inline long long lk_curl_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Runs the transfers until one ends or `wait_ms` has passed (activity on
   a socket that ends nothing does not cut the wait short) and reports
   those that ended, at most `max`: their tags, HTTP statuses (0: none
   came) and whether an address was refused; their slots are free again.
   Returns the number reported; when libcurl fails, every transfer is ended
   and reported in turn as without an answer. */
static inline int lk_curl_queue_run(struct lk_curl_queue *q, long wait_ms, long long *tags, long *statuses, int *refused, int max) {
    int running = 0, done = 0;
    if (q->busy == 0 || max < 1) return 0;
    long long deadline = lk_curl_now_ms() + wait_ms;
    int failed = curl_multi_perform(q->multi, &running) != CURLM_OK;
    for (;;) {
        if (failed) break;
        CURLMsg *message;
        int left = 0;
        while (done < max && (message = curl_multi_info_read(q->multi, &left)) != NULL) {
            if (message->msg != CURLMSG_DONE) continue;
            struct lk_curl_slot *slot = NULL;
            curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, (char **)&slot);
            if (slot == NULL) continue;
            long status = 0;
            curl_easy_getinfo(slot->easy, CURLINFO_RESPONSE_CODE, &status);
            lk_curl_slot_report(q, slot, status, tags, statuses, refused, &done);
        }
        long long left_ms = deadline - lk_curl_now_ms();
        if (done > 0 || q->busy == 0 || left_ms <= 0) break;
        if (curl_multi_poll(q->multi, NULL, 0, (int)left_ms, NULL) != CURLM_OK || curl_multi_perform(q->multi, &running) != CURLM_OK) failed = 1;
    }
    if (failed) {
        for (int i = 0; i < q->capacity && done < max; i++) {
            if (q->slots[i].easy != NULL) lk_curl_slot_report(q, &q->slots[i], 0, tags, statuses, refused, &done);
        }
    }
    return done;
}
#endif
