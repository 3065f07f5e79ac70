package handlers

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// SetRecorderTx replaces how r finds the broker's transaction of a message
// (wsql.TxFromContext), whose context key only watermill-sql can set.
func SetRecorderTx(r *Recorder, txOf func(context.Context) (pgx.Tx, bool)) { r.txOf = txOf }

// SetRecorderAfterCommit replaces how r defers counting a batch written in
// the broker's transaction until its commit.
func SetRecorderAfterCommit(r *Recorder, afterCommit func(context.Context) func(func())) {
	r.afterCommit = afterCommit
}
