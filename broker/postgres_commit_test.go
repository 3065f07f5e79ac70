package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/broker"
	"github.com/mockstagram/pipeline/broker/brokertest"
	"github.com/mockstagram/pipeline/messages"
)

// A handler on the postgres broker can defer work until its message's read
// transaction commits (the recorder counts what it wrote in it then): the
// hook runs after the ack's commit, when the message's row is gone, and a
// transaction that does not commit (its connection cut before the ack)
// drops it.
func TestPostgresAfterCommit(t *testing.T) {
	_, b, deps, _, ch := subscribeFetchTasks(t)
	queued := func(uuid string) int {
		var n int
		require.NoError(t, deps.Pool.QueryRow(context.Background(), `SELECT count(*) FROM `+queueTasks+` WHERE uuid = $1`, uuid).Scan(&n))
		return n
	}
	hookOf := func(m *message.Message) *broker.CommitHookTx {
		t.Helper()
		tx, ok := wsql.TxFromContext(m.Context())
		require.True(t, ok, "the message carries its read transaction")
		h, ok := tx.(*broker.CommitHookTx)
		require.True(t, ok, "the read transaction is a %T", tx)
		_, ok = h.Pgx()
		require.True(t, ok, "a pgx transaction to write in")
		return h
	}
	publish := func(payload string) string {
		m := message.NewMessage(watermill.NewUUID(), []byte(payload))
		require.NoError(t, b.Publisher().Publish(messages.TopicFetchTasks, m))
		return m.UUID
	}

	// Committed: the hook runs once, after the row is deleted.
	uuid := publish("acked")
	m := receiveAll(t, ch, 1)[0]
	ran := make(chan int, 2)
	hookOf(m).AfterCommit(func() { ran <- queued(uuid) })
	assert.Equal(t, 1, queued(uuid), "the row is there until the commit")
	m.Ack()
	select {
	case left := <-ran:
		assert.Zero(t, left, "the hook ran before the commit deleted the row")
	case <-time.After(brokertest.Timeout):
		t.Fatal("the hook did not run after the commit")
	}

	// Not committed: the read's connection is cut before the ack; the hook
	// never runs, the message comes back and its new transaction's hook does.
	uuid = publish("cut")
	m = receiveAll(t, ch, 1)[0]
	dropped := make(chan struct{}, 1)
	hookOf(m).AfterCommit(func() { dropped <- struct{}{} })
	crashReader(t, deps.Pool)
	m.Ack() // its commit fails
	again := receiveAll(t, ch, 1)[0]
	require.Equal(t, uuid, again.UUID)
	hookOf(again).AfterCommit(func() { ran <- queued(uuid) })
	again.Ack()
	select {
	case left := <-ran:
		assert.Zero(t, left)
	case <-time.After(brokertest.Timeout):
		t.Fatal("the redelivery's hook did not run after its commit")
	}
	assert.Empty(t, dropped, "the hook of the transaction that never committed ran")
}
