/* coffre — every input limit in one place, each with its reason (STYLE.md).
 * Operators may lower or raise some of them in coffre.conf; the values here are the
 * defaults and the hard bounds the configuration is checked against. */
#ifndef CF_BASE_LIMITS_H
#define CF_BASE_LIMITS_H

/* HTTP ---------------------------------------------------------------------------- */

/* Memory libmicrohttpd may use for one connection: request line, headers and the read
 * buffer. 16 KiB holds any honest request's headers (a token is under 1 KiB; nginx
 * takes 8 KiB a line); a larger header block gets 431. libmicrohttpd 0.9.75 clears it
 * for each request on a kept-alive connection (perf: a memset of the pool's size): at
 * 32 KiB that cost reads and writes about 5 % (docs/PERFORMANCE.md). */
#define CF_HTTP_CONN_MEMORY_DEFAULT (16u * 1024u)
#define CF_HTTP_CONN_MEMORY_MIN     (8u * 1024u)
#define CF_HTTP_CONN_MEMORY_MAX     (1024u * 1024u)

/* A request body is buffered whole before its handler runs, so it is capped: 1 MiB is
 * enough for a batch of a thousand 1 KiB records (files stream elsewhere). */
#define CF_HTTP_BODY_DEFAULT (1024u * 1024u)
#define CF_HTTP_BODY_MAX     (64u * 1024u * 1024u)

/* URL path length: longer paths are refused with 414 before routing. */
#define CF_HTTP_PATH_MAX 2048u
/* Path parameters a route may declare ({tenant}, {id}, ...). */
#define CF_HTTP_ROUTE_PARAMS_MAX 8u
/* Segments in a path: deeper paths match no route. */
#define CF_HTTP_PATH_SEGMENTS_MAX 16u

/* Connections: all together, and from one address (one /64 for IPv6 rate limits). */
#define CF_HTTP_CONNECTIONS_DEFAULT 1024u
#define CF_HTTP_CONNECTIONS_MAX     65536u
#define CF_HTTP_PER_IP_DEFAULT      64u
/* Idle or slow connections are closed after this many seconds (slowloris). */
#define CF_HTTP_TIMEOUT_DEFAULT 30u
#define CF_HTTP_TIMEOUT_MAX     3600u
/* SIGTERM waits at most this long for in-flight requests before closing. */
#define CF_HTTP_GRACE_DEFAULT 10u

/* Per-address request rate (token bucket): sustained requests per second and burst. */
#define CF_HTTP_RATE_DEFAULT  200u
#define CF_HTTP_BURST_DEFAULT 400u
#define CF_HTTP_RATE_MAX      1000000u
/* Addresses tracked by the rate limiter: bounded memory whatever the number of peers. */
#define CF_HTTP_RATE_SLOTS 65536u

/* Work handed off the I/O threads waits in a bounded queue; past it, 503 busy. */
#define CF_POOL_QUEUE_MAX   4096u
#define CF_POOL_THREADS_MAX 256u

/* JSON ---------------------------------------------------------------------------- */

/* Nesting depth: jansson recurses, and no document of ours needs more than a few
 * levels; 32 leaves room for user objects inside records. */
#define CF_JSON_DEPTH_MAX 32u
/* A JSON document is never larger than the largest body we accept. */
#define CF_JSON_BYTES_MAX CF_HTTP_BODY_MAX
/* A single string value read through the typed getters, unless the caller says less. */
#define CF_JSON_STRING_MAX (64u * 1024u)

/* Configuration ------------------------------------------------------------------- */

/* coffre.conf is small; a larger file is a mistake (or not our file). */
#define CF_CONFIG_BYTES_MAX (64u * 1024u)
/* Paths in the configuration (data folder, certificate, key). */
#define CF_PATH_MAX 1024u

/* Logging ------------------------------------------------------------------------- */

/* One log line: longer messages are cut, never split across lines. */
#define CF_LOG_LINE_MAX 4096u
/* The detail attached to an error (a field name and a rule), shown to clients. */
#define CF_ERR_DETAIL_MAX 256u
/* ... and the path of the value that broke a rule ("records[3].data.email"), and the rule. */
#define CF_ERR_PATH_MAX 128u
#define CF_ERR_RULE_MAX 32u

/* Secure memory ------------------------------------------------------------------- */

/* Locked, non-dumpable arena for secrets (keys, passphrases). 1 MiB holds thousands of
 * keys; larger secrets get their own locked mapping. */
#define CF_SECMEM_ARENA_DEFAULT (1024u * 1024u)
#define CF_SECMEM_SLOT_MAX      4096u

#endif
