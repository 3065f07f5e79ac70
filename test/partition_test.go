package test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/mockstagram/pipeline/app"
	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

// lockWatch counts the outcomes of the scheduler's lock calls.
type lockWatch struct {
	store.Store
	acquired, refused, failed, lost atomic.Int64
}

func (w *lockWatch) TryLead(ctx context.Context, name string) (store.Lease, bool, error) {
	l, ok, err := w.Store.TryLead(ctx, name)
	switch {
	case err != nil:
		w.failed.Add(1)
	case !ok:
		w.refused.Add(1)
	default:
		w.acquired.Add(1)
		go func() { // ends when the lease is lost or released (Release closes Lost)
			<-l.Lost()
			w.lost.Add(1)
		}()
	}
	return l, ok, err
}

// TestDatabasePartitionLeadership (SPEC §7, issue 10): the only scheduler's
// database goes silent (a partition: connections hang, nothing is reset)
// for outageDuration of real time. The lease's check times out, so the lock
// is presumed lost, but at the server the lock session lives on, holding
// the lock. The process must not mistake its own stale session for another
// scheduler: when the network is back it takes the lock back, scheduling
// goes on (every minute scheduled once, nothing stored twice), and readiness
// says "not ready" while the lock is unconfirmed.
func TestDatabasePartitionLeadership(t *testing.T) {
	cfg := testConfigStore(t, "postgres")
	proxy, direct := throughFaultProxy(t, &cfg)

	p := &pipeline{clock: clockwork.NewFakeClockAt(start), published: map[time.Time]float64{}}
	var locks *lockWatch
	a := fxtest.New(t,
		app.Options(cfg, app.AllRoles()),
		fx.Decorate(func(clockwork.Clock) clockwork.Clock { return p.clock }),
		fx.Decorate(func(s store.Store) store.Store {
			locks = &lockWatch{Store: s}
			return locks
		}),
		fx.Populate(&p.store, &p.pub, &p.metrics, &p.http),
	)
	a.RequireStart()
	t.Cleanup(a.RequireStop)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, direct) // not through the proxy
	require.NoError(t, err)
	defer admin.Close(ctx)

	p.runMinute(t, cfg, start, numPKs)
	require.Equal(t, int64(1), locks.acquired.Load())
	stale := schedulerLockHolder(t, admin)
	require.NotZero(t, stale, "nobody holds the scheduler lock")
	code, body := readyz(t, p)
	require.Equal(t, http.StatusOK, code, body)

	// The partition. The lease's check times out and the leader's retry of
	// the lock is given up: scheduling goes on, unconfirmed.
	proxy.Silence()
	silencedAt := time.Now()
	waitFor(t, 30*time.Second, func() bool { return locks.lost.Load() == 1 }, "the lease lost during the partition")
	waitFor(t, 30*time.Second, func() bool { return locks.failed.Load() > 0 }, "a lock retry given up during the partition")
	// The client closes the lock's connection (pgx gives up on it within
	// 15 s); the close is lost in the partition, so the server keeps the
	// session.
	var port int
	require.NoError(t, admin.QueryRow(ctx, `SELECT client_port FROM pg_stat_activity WHERE pid = $1`, stale).Scan(&port))
	waitFor(t, 40*time.Second, func() bool { return proxy.Orphaned(port) }, "the lock's connection closed by the client during the partition")
	<-time.After(time.Until(silencedAt.Add(outageDuration()))) // hold the partition for its whole length
	require.Equal(t, stale, schedulerLockHolder(t, admin), "the old lock session outlives the partition at the server")

	// The network is back. Until the leader's next retry (the fake clock
	// has not moved), its lock is unconfirmed: not ready.
	proxy.Restore()
	restoredAt := time.Now()
	waitFor(t, 10*time.Second, func() bool {
		code, body := readyz(t, p)
		return code == http.StatusServiceUnavailable && strings.Contains(body, handlers.ErrLockAdrift.Error())
	}, "not ready while the lock is unconfirmed")

	// Its next retry takes the lock back from the stale session, and it is
	// ready again: waitNudging allows 60 s.
	minute1 := start.Add(time.Minute)
	p.waitNudging(t, minute1.Add(30*time.Second), func() bool {
		code, _ := readyz(t, p)
		return locks.acquired.Load() == 2 && code == http.StatusOK
	}, "the lock taken back and ready")
	assert.Zero(t, locks.refused.Load(), "the process's own stale session was taken for another scheduler")
	holder := schedulerLockHolder(t, admin)
	assert.NotZero(t, holder)
	assert.NotEqual(t, stale, holder, "the stale session still holds the lock")
	var staleLeft int
	require.NoError(t, admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, stale).Scan(&staleLeft))
	assert.Zero(t, staleLeft, "the stale lock session was not terminated")

	// Minute 1 is scheduled (each shard once) and stored, once.
	p.runMinute(t, cfg, minute1, numPKs)
	nonEmpty := 0
	for _, pks := range handlers.Assign(influencer.Range{From: firstPK, To: firstPK + numPKs - 1}.PKs(), cfg.Shards) {
		if len(pks) > 0 {
			nonEmpty++
		}
	}
	assert.Equal(t, float64(nonEmpty), p.published[minute1]-p.published[start], "tasks published for minute 1")
	var rows, distinct int
	require.NoError(t, admin.QueryRow(ctx, `SELECT count(*), count(DISTINCT (pk, minute)) FROM samples`).Scan(&rows, &distinct))
	assert.Equal(t, 2*numPKs, rows, "samples stored")
	assert.Equal(t, rows, distinct, "a (pk, minute) stored twice")
	var wrongCounts int
	require.NoError(t, admin.QueryRow(ctx, `SELECT count(*) FROM influencer_summary WHERE samples <> 2`).Scan(&wrongCounts))
	assert.Zero(t, wrongCounts, "influencers whose summary does not count both minutes once")
	code, body = readyz(t, p)
	assert.Equal(t, http.StatusOK, code, body)
	t.Logf("lock: %d acquired, %d given up, %d refused; leadership back %s after the network",
		locks.acquired.Load(), locks.failed.Load(), locks.refused.Load(), time.Since(restoredAt).Round(100*time.Millisecond))
}

// schedulerLockHolder is the pid of the session holding the scheduler's
// advisory lock (0: nobody).
func schedulerLockHolder(t *testing.T, conn *pgx.Conn) uint32 {
	t.Helper()
	var pid uint32
	err := conn.QueryRow(context.Background(), `
SELECT l.pid FROM pg_locks l
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = ((hashtext('mockstagram-scheduler')::bigint >> 32) & 4294967295)::oid
  AND l.objid = (hashtext('mockstagram-scheduler')::bigint & 4294967295)::oid`).Scan(&pid)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0
	}
	require.NoError(t, err)
	return pid
}

// readyz is the status and body of the process's /readyz.
func readyz(t *testing.T, p *pipeline) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + p.http.Addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}
