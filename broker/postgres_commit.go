package broker

import (
	"context"
	stdsql "database/sql"
	"sync"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/jackc/pgx/v5"
)

// hookBeginner is the postgres subscribers' Beginner: each read transaction
// it begins is a CommitHookTx, so a handler that writes in it can act on
// what it wrote once that is committed (the recorder counts its samples
// then, not when its statement returns: the transaction commits after the
// handler, with the ack, and may still fail or be rolled back).
type hookBeginner struct{ wsql.Beginner }

func (b hookBeginner) BeginTx(ctx context.Context, opts *stdsql.TxOptions) (wsql.Tx, error) {
	tx, err := b.Beginner.BeginTx(ctx, opts)
	if err != nil {
		return tx, err
	}
	return &CommitHookTx{Tx: tx}, nil
}

// CommitHookTx is a read transaction of the postgres broker, as a handler
// finds it in its message's context (wsql.TxFromContext). Functions given
// to AfterCommit run after the transaction commits; a rollback, or a
// commit that fails, drops them.
type CommitHookTx struct {
	wsql.Tx

	mu    sync.Mutex
	hooks []func()
}

// AfterCommit runs fn once the transaction has committed (in the goroutine
// that commits it: fn must not block).
func (t *CommitHookTx) AfterCommit(fn func()) {
	t.mu.Lock()
	t.hooks = append(t.hooks, fn)
	t.mu.Unlock()
}

// Pgx is the pgx transaction underneath, for writing in it.
func (t *CommitHookTx) Pgx() (pgx.Tx, bool) {
	switch tx := t.Tx.(type) {
	case *wsql.PgxTx:
		return tx.Tx, tx.Tx != nil
	case wsql.PgxTx:
		return tx.Tx, tx.Tx != nil
	}
	return nil, false
}

func (t *CommitHookTx) Commit() error {
	err := t.Tx.Commit()
	hooks := t.take()
	if err != nil {
		return err
	}
	for _, fn := range hooks {
		fn()
	}
	return nil
}

func (t *CommitHookTx) Rollback() error {
	t.take()
	return t.Tx.Rollback()
}

func (t *CommitHookTx) take() []func() {
	t.mu.Lock()
	defer t.mu.Unlock()
	hooks := t.hooks
	t.hooks = nil
	return hooks
}
