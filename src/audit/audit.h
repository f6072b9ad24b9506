/* coffre — audit: the tamper-evident audit log (DESIGN §6, measures AL1–AL6).
 *
 * Every entry is a canonical binary record (entry.c, docs/formats.md). It is written in
 * the same store transaction as the change it records, so it is durable before the
 * reply leaves, or the request fails (fail closed). A background sequencer gives
 * committed entries their index in one append-only Merkle tree per deployment (RFC 6962
 * hashing, merkle.c) and stores each perfect subtree's hash; checkpoints (origin, size,
 * root) are signed with the deployment's Ed25519 key in the C2SP signed-note format.
 * Anyone holding an earlier checkpoint can prove that a later log extends it. */
#ifndef CF_AUDIT_H
#define CF_AUDIT_H

#include "base/base.h"
#include "crypto/crypto.h"
#include "keys/keys.h"
#include "store/store.h"

/* --- Merkle tree (merkle.c) ----------------------------------------------------------- */
#define CF_HASH_LEN         CF_SHA256_LEN
#define CF_MERKLE_LEVELS    63
#define CF_MERKLE_PROOF_MAX 128

CF_MUST cf_err cf_merkle_leaf(struct cf_span data, uint8_t out[CF_HASH_LEN]);
CF_MUST cf_err cf_merkle_node(const uint8_t l[CF_HASH_LEN], const uint8_t r[CF_HASH_LEN],
                              uint8_t out[CF_HASH_LEN]);

/* The right frontier of a tree: nodes[level] is the perfect subtree for each set bit of
 * size. Enough to append and to compute the root. */
struct cf_merkle_frontier {
	uint64_t size;
	uint8_t nodes[CF_MERKLE_LEVELS][CF_HASH_LEN];
};
/* Called for each perfect subtree an append completes: level 0 is the leaf itself. */
typedef cf_err (*cf_merkle_emit_fn)(void *ctx, unsigned level, uint64_t index,
                                    const uint8_t hash[CF_HASH_LEN]);
/* Reads a stored perfect subtree hash (2^level leaves from index * 2^level). */
typedef cf_err (*cf_merkle_get_fn)(void *ctx, unsigned level, uint64_t index,
                                   uint8_t out[CF_HASH_LEN]);

void cf_merkle_frontier_init(struct cf_merkle_frontier *f);
CF_MUST cf_err cf_merkle_append(struct cf_merkle_frontier *f, const uint8_t leaf[CF_HASH_LEN],
                                cf_merkle_emit_fn emit, void *ctx);
CF_MUST cf_err cf_merkle_root(const struct cf_merkle_frontier *f, uint8_t out[CF_HASH_LEN]);
CF_MUST cf_err cf_merkle_frontier_load(struct cf_merkle_frontier *f, uint64_t size,
                                       cf_merkle_get_fn get, void *ctx);
/* MTH(D[begin:end]) from stored subtrees: O(log n) reads. */
CF_MUST cf_err cf_merkle_subtree(cf_merkle_get_fn get, void *ctx, uint64_t begin, uint64_t end,
                                 uint8_t out[CF_HASH_LEN]);
/* Proofs (RFC 9162 §2.1.3.1, §2.1.4.1); proof holds CF_MERKLE_PROOF_MAX hashes. */
CF_MUST cf_err cf_merkle_inclusion_proof(cf_merkle_get_fn get, void *ctx, uint64_t index,
                                         uint64_t size, uint8_t (*proof)[CF_HASH_LEN], size_t *n);
CF_MUST cf_err cf_merkle_consistency_proof(cf_merkle_get_fn get, void *ctx, uint64_t size1,
                                           uint64_t size2, uint8_t (*proof)[CF_HASH_LEN],
                                           size_t *n);
/* Verification (RFC 9162 §2.1.3.2, §2.1.4.2): CF_OK, or CF_E_INTEGRITY saying why. */
CF_MUST cf_err cf_merkle_verify_inclusion(uint64_t index, uint64_t size,
                                          const uint8_t leaf[CF_HASH_LEN],
                                          const uint8_t (*proof)[CF_HASH_LEN], size_t n,
                                          const uint8_t root[CF_HASH_LEN]);
CF_MUST cf_err cf_merkle_verify_consistency(uint64_t size1, uint64_t size2,
                                            const uint8_t root1[CF_HASH_LEN],
                                            const uint8_t root2[CF_HASH_LEN],
                                            const uint8_t (*proof)[CF_HASH_LEN], size_t n);
/* A proof file in the JSON of tests/vectors/merkle (leafIdx/treeSize/root/leafHash/proof,
 * or size1/size2/root1/root2/proof): CF_OK when it verifies, CF_E_INTEGRITY when not,
 * CF_E_INVALID when it is not such a file. */
CF_MUST cf_err cf_merkle_verify_json(const json_t *doc);

/* --- entries (entry.c) ------------------------------------------------------------------ */
enum cf_actor_kind {
	CF_ACTOR_ANONYMOUS = 0, /* with its source */
	CF_ACTOR_USER = 1,
	CF_ACTOR_CLIENT = 2,
	CF_ACTOR_OPERATOR = 3, /* on the admin socket: "uid=N" */
	CF_ACTOR_SYSTEM = 4,   /* coffred itself: jobs */
};
enum cf_outcome { CF_OUTCOME_OK = 0, CF_OUTCOME_DENIED = 1, CF_OUTCOME_FAILED = 2 };

#define CF_AUDIT_FORMAT     1 /* an entry without detail */
#define CF_AUDIT_FORMAT_2   2 /* the same and a detail: exactly one form for each entry */
#define CF_AUDIT_SALT       16
#define CF_AUDIT_TEXT_MAX   255
#define CF_AUDIT_ENTRY_MAX  2048
#define CF_AUDIT_FLAG_CLOCK 1u /* the clock was synchronized (AL6) */

/* One entry. Identifying values (actor, resource, source) are what is stored: for a
 * tenant's entries, an HMAC under its audit key (cf_audit_mac); for the deployment's, the
 * operator's uid or a key id. Never a secret. */
struct cf_audit_entry {
	uint8_t format;
	int64_t time_us;       /* UTC */
	struct cf_span tenant; /* empty: the deployment's own entries */
	uint64_t seq;          /* per tenant, from 1, no gaps (0 until sequenced) */
	uint8_t actor_kind;
	struct cf_span actor;
	struct cf_span action;   /* "tenant.create", "keys.rotate", "operator.unseal", ... */
	struct cf_span resource; /* what it acted on */
	uint8_t outcome;
	struct cf_span error;      /* the error code when not ok */
	struct cf_span request_id; /* hex, or empty */
	struct cf_span privilege;  /* AL5: the role or right used ("operator", "admin") */
	struct cf_span detail;     /* clear words the actor gave (a reveal's reason), or empty */
	uint8_t flags;
	uint8_t salt[CF_AUDIT_SALT];
};
/* Canonical encoding: out holds CF_AUDIT_ENTRY_MAX. CF_E_INVALID for an oversize field. */
CF_MUST cf_err cf_audit_encode(const struct cf_audit_entry *e, uint8_t *out, size_t cap,
                               size_t *len);
/* On PostgreSQL (and in SQLite logs of coffre before append-time numbering) an entry
 * is stored with sequence 0 until the sequencer numbers it: this writes the
 * tenant's sequence number into the encoded bytes (CF_E_INTEGRITY if already set). */
CF_MUST cf_err cf_audit_set_seq(uint8_t *body, size_t len, uint64_t seq);
/* Strict parse (fuzzed): spans point into bytes. CF_E_INTEGRITY when malformed (or not
 * yet sequenced). */
CF_MUST cf_err cf_audit_decode(struct cf_span bytes, struct cf_audit_entry *e);

/* --- the log (log.c) --------------------------------------------------------------------- */
/* The data store's audit tables: migration 3 in store/schema.c. */

/* What a writer states; the rest (time, seq, salt, clock flag) the log fills in. */
struct cf_audit_event {
	const char *tenant; /* NULL: the deployment's log */
	enum cf_actor_kind actor_kind;
	const char *actor; /* clear value; HMACed for a tenant */
	const char *action;
	const char *resource; /* clear value; HMACed for a tenant (NULL: none) */
	enum cf_outcome outcome;
	const char *error; /* error code name, NULL when ok */
	const char *request_id;
	const char *privilege;
	/* In clear, for the tenant to read (a reveal's reason: PV7); never a secret. Bytes
	 * outside printable ASCII become '?'. NULL: none. */
	const char *detail;
};
/* An entry made ready outside the store's writer: the tenant's HMACs computed, the salt
 * drawn, the clock's state read, every string copied (bounded). */
struct cf_audit_prepared {
	char tenant[CF_TENANT_ID_MAX + 1];
	uint8_t actor_kind, outcome, flags;
	char actor[CF_AUDIT_TEXT_MAX + 1], action[64], resource[CF_AUDIT_TEXT_MAX + 1];
	char error[48], request_id[64], privilege[64], detail[CF_AUDIT_TEXT_MAX + 1];
	uint8_t salt[CF_AUDIT_SALT];
};
/* Sets a prepared entry's detail: printable ASCII kept, anything else '?', cut at
 * CF_AUDIT_TEXT_MAX (words a person typed). NULL: none. */
void cf_audit_set_detail(struct cf_audit_prepared *p, const char *detail);
/* kr HMACs a tenant's identifying values (NULL only for deployment entries). */
CF_MUST cf_err cf_audit_prepare(struct cf_keyring *kr, const struct cf_audit_event *ev,
                                struct cf_audit_prepared *out);
/* Appends it inside the caller's write transaction (so it commits with the change it
 * records, or not at all): the time, the encoding. Its tenant sequence number and tree
 * index come from the sequencer, within a second, so that concurrent requests of one
 * tenant never wait on each other's commit. */
CF_MUST cf_err cf_audit_append(struct cf_tx *tx, const struct cf_audit_prepared *p);
/* Both, in a transaction of its own, waiting until durable. */
CF_MUST cf_err cf_audit_record(struct cf_store *st, struct cf_keyring *kr,
                               const struct cf_audit_event *ev);
/* The HMAC of a tenant's identifying value, hex (65 bytes): what entries store and what a
 * search compares. */
CF_MUST cf_err cf_audit_mac(struct cf_keyring *kr, const char *tenant, const char *value,
                            char out[65]);

/* Sequencer: gives up to `limit` committed entries their tree index, stores the subtrees
 * they complete, all in one transaction. *added gets how many. Only one sequencer runs
 * at a time per database (PostgreSQL: an advisory lock). */
struct cf_audit_seq;
CF_MUST cf_err cf_audit_seq_open(struct cf_store *st, struct cf_audit_seq **out);
void cf_audit_seq_close(struct cf_audit_seq **pp);
CF_MUST cf_err cf_audit_seq_step(struct cf_audit_seq *s, unsigned limit, unsigned *added);
/* Steps until every committed entry is in the tree: at start-up, before anything is
 * appended, so that entries an older coffre left unnumbered on SQLite come first. */
CF_MUST cf_err cf_audit_seq_drain(struct cf_store *st);
/* Signs and stores a checkpoint of the current tree, now, when it grew since the last
 * one. *made says whether one was made. Needs an unsealed keyring. */
CF_MUST cf_err cf_audit_checkpoint(struct cf_audit_seq *s, struct cf_keyring *kr, bool *made);

/* Retention: deletes the entries of the longest checkpointed prefix of the tree whose
 * last entry is older than before_us, keeping every checkpoint and every subtree hash
 * above the leaves (and the boundary leaf), so the rest of the log still verifies and
 * still proves it extends the checkpoints. *pruned gets the new start of the log (the
 * number of entries pruned in all). */
CF_MUST cf_err cf_audit_prune(struct cf_store *st, int64_t before_us, uint64_t *pruned);

/* Checkpoints: C2SP signed notes, "<origin>\n<size>\n<base64 root>\n\n— <origin> <sig>\n". */
#define CF_CHECKPOINT_MAX 512
CF_MUST cf_err cf_checkpoint_sign(struct cf_keyring *kr, const char *origin, uint64_t size,
                                  const uint8_t root[CF_HASH_LEN], char *out, size_t cap);
/* Parses and checks a note against a public key: origin, size, root. CF_E_INTEGRITY for
 * a bad signature or a malformed note. */
CF_MUST cf_err cf_checkpoint_open(const char *note, const uint8_t pub[CF_ED25519_PUB], char *origin,
                                  size_t origin_cap, uint64_t *size, uint8_t root[CF_HASH_LEN]);

/* Reading the log (query.c): what the API and the admin socket serve. Each returns a
 * JSON object; proofs and roots are standard base64, as in tests/vectors/merkle. */
/* {"size", "root", "checkpoint"}: the latest signed checkpoint; CF_E_NOT_FOUND before
 * the first. */
CF_MUST cf_err cf_audit_latest(struct cf_store *st, json_t **out);
/* {"index", "size", "leaf_hash", "proof"}: entry index in the tree of size (0: the
 * latest checkpoint's). CF_E_OUT_OF_RANGE when index >= size or size is past the tree. */
CF_MUST cf_err cf_audit_inclusion(struct cf_store *st, uint64_t index, uint64_t size, json_t **out);
/* {"size1", "size2", "proof"}; size2 0 means the latest checkpoint's. */
CF_MUST cf_err cf_audit_consistency(struct cf_store *st, uint64_t size1, uint64_t size2,
                                    json_t **out);
/* A tenant's entries (tenant NULL: the deployment's own), newest first (by the tenant's
 * sequence; an entry is listed once sequenced, within a second of its commit), filtered; values
 * compared as stored (HMACs for a tenant: the caller passes cf_audit_mac's). Cursor: the "next" of
 * the previous page (0: the first).
 * {"entries": [...], "next"}. */
struct cf_audit_filter {
	const char *tenant, *action, *actor, *resource;
	int outcome;                /* -1: any */
	int64_t since_us, until_us; /* 0: unbounded */
	int64_t cursor;
	unsigned limit; /* 1..1000 */
};
CF_MUST cf_err cf_audit_list(struct cf_store *st, const struct cf_audit_filter *f, json_t **out);

/* Sinks (sink.c, AL3): copies of the log apart from the data store. spec is
 * "file:PATH" (JSON lines, fsynced), "syslog:[SOCKET]" (RFC 5424, default /dev/log) or a
 * store URL ("sqlite:PATH", "postgres://..."; the entries' exact bytes). Each resumes
 * where it stopped: the file from its last complete line, the store from its highest
 * index, syslog from a cursor in the data store. */
struct cf_audit_sink;
CF_MUST cf_err cf_audit_sink_open(struct cf_store *src, const char *spec,
                                  struct cf_audit_sink **out);
void cf_audit_sink_close(struct cf_audit_sink **pp);
/* Delivers what is sequenced and not yet delivered (up to CF_AUDIT_SINK_BATCH entries
 * and the checkpoints they complete). *delivered gets how many lines or rows. */
#define CF_AUDIT_SINK_BATCH 1000u
CF_MUST cf_err cf_audit_sink_step(struct cf_audit_sink *s, unsigned *delivered);

/* Offline verification (coffre audit verify). */
struct cf_audit_report {
	uint64_t entries, sequenced, checkpoints, tenants;
	uint64_t pruned; /* entries removed by retention before the first one kept */
	bool ok;
	char problem[512]; /* the first thing that does not match */
};
/* Reads the whole log from st: re-hashes every entry, rebuilds the tree, compares the
 * stored subtrees and every checkpoint (signature with pub, root, consistency), checks
 * per-tenant sequence numbers. trusted (may be NULL) is a checkpoint note obtained
 * earlier that the log must extend. progress (may be NULL) is called now and then. */
CF_MUST cf_err cf_audit_verify(struct cf_store *st, const uint8_t pub[CF_ED25519_PUB],
                               const char *trusted, void (*progress)(uint64_t done, uint64_t total),
                               struct cf_audit_report *rep);
/* The deployment's checkpoint public key and origin as the data store records them. */
CF_MUST cf_err cf_audit_identity(struct cf_store *st, uint8_t pub[CF_ED25519_PUB], char *origin,
                                 size_t cap);

#endif
