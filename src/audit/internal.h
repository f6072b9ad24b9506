/* coffre — audit internals shared by log.c and query.c. Not part of the face. */
#ifndef CF_AUDIT_INTERNAL_H
#define CF_AUDIT_INTERNAL_H

#include "audit/audit.h"

/* A stored perfect subtree, read in the transaction ctx (a struct cf_tx *). */
cf_err cf_audit_tx_get_node(void *ctx, unsigned level, uint64_t index, uint8_t out[CF_HASH_LEN]);
/* The tree's size as the sequencer last committed it. */
cf_err cf_audit_tx_tree_size(struct cf_tx *tx, uint64_t *size);

#endif
