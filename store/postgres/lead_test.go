package postgres_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/store"
	"github.com/mockstagram/pipeline/store/postgres"
	"github.com/mockstagram/pipeline/store/postgres/pgtest"
	"github.com/mockstagram/pipeline/store/storetest"
)

// lockHolder is the pid of the session holding the advisory lock of name
// (0: nobody), read over conn.
func lockHolder(t *testing.T, conn *pgx.Conn, name string) uint32 {
	t.Helper()
	var pid uint32
	err := conn.QueryRow(context.Background(), `
SELECT l.pid FROM pg_locks l
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.objid = (hashtext($1)::bigint & 4294967295)::oid`, name).Scan(&pid)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0
	}
	require.NoError(t, err)
	return pid
}

func sessionExists(t *testing.T, conn *pgx.Conn, pid uint32) bool {
	t.Helper()
	var n int
	require.NoError(t, conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&n))
	return n > 0
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(15 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// A partition silences the lease's connection: the lease is lost, but its
// session lives on at the server with the lock. Another process's store
// leaves it alone (its TTL has not run out); the same store takes the lock
// back at once by terminating its own stale session.
func TestLeaseTakenBackFromOwnStaleSession(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	hole := newBlackhole(t, u.Host)
	u.Host = hole.addr()
	ctx := context.Background()
	a, err := postgres.New(ctx, u.String(), discard(), clockwork.NewFakeClockAt(storetest.Now()), postgres.WithLeaseCheckInterval(100*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(a.Close)
	other, err := postgres.New(ctx, dsn, discard(), clockwork.NewFakeClockAt(storetest.Now())) // default interval: a 15 s TTL
	require.NoError(t, err)
	t.Cleanup(other.Close)
	admin := connect(t, dsn)

	la, ok, err := a.TryLead(ctx, "scheduler")
	require.NoError(t, err)
	require.True(t, ok)
	stale := lockHolder(t, admin, "scheduler")
	require.NotZero(t, stale)

	hole.swallow() // every connection so far goes silent; new ones get through
	waitClosed(t, la.Lost(), "the silenced lease lost")
	require.NoError(t, la.Release(ctx))
	require.Equal(t, stale, lockHolder(t, admin, "scheduler"), "the server still sees the old session holding the lock")

	_, ok, err = other.TryLead(ctx, "scheduler")
	require.NoError(t, err)
	assert.False(t, ok, "another process took the lock from a session whose lease has not expired")
	assert.True(t, sessionExists(t, admin, stale), "another process terminated the session")

	lb, ok, err := a.TryLead(ctx, "scheduler")
	require.NoError(t, err)
	require.True(t, ok, "the store takes its lock back from its own stale session")
	assert.False(t, sessionLingers(t, admin, stale), "the stale session is gone")
	holder := lockHolder(t, admin, "scheduler")
	assert.NotZero(t, holder)
	assert.NotEqual(t, stale, holder)
	assert.False(t, isClosed(lb.Lost()))
	require.NoError(t, lb.Release(ctx))
	assert.Zero(t, lockHolder(t, admin, "scheduler"), "released")
}

// sessionLingers waits (up to 5 s) for the session of pid to leave
// pg_stat_activity and reports whether it still exists: pg_terminate_backend
// only signals, and the backend releases its locks on the way out, a moment
// before its entry goes.
func sessionLingers(t *testing.T, admin *pgx.Conn, pid uint32) bool {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for sessionExists(t, admin, pid) {
		if !time.Now().Before(deadline) {
			return true
		}
		<-time.After(20 * time.Millisecond) // polling interval
	}
	return false
}

// A holder that stops pinging (a process gone without its session) keeps
// the lock only until its lease's TTL runs out; then a standby takes it.
func TestLeaseTakenOverFromExpiredHolder(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	patient, err := postgres.New(ctx, dsn, discard(), clockwork.NewFakeClockAt(storetest.Now())) // 15 s TTL
	require.NoError(t, err)
	t.Cleanup(patient.Close)
	quick, err := postgres.New(ctx, dsn, discard(), clockwork.NewFakeClockAt(storetest.Now()), postgres.WithLeaseCheckInterval(100*time.Millisecond)) // 1 s TTL
	require.NoError(t, err)
	t.Cleanup(quick.Close)
	admin := connect(t, dsn)

	gone := connect(t, dsn)
	_, err = gone.Exec(ctx, `SELECT pg_advisory_lock(hashtext('scheduler'))`)
	require.NoError(t, err)
	holder := gone.PgConn().PID()

	_, ok, err := patient.TryLead(ctx, "scheduler")
	require.NoError(t, err)
	assert.False(t, ok, "taken from a holder silent for less than the TTL")
	assert.True(t, sessionExists(t, admin, holder))

	var lease store.Lease
	deadline := time.Now().Add(15 * time.Second)
	for lease == nil {
		require.True(t, time.Now().Before(deadline), "no take-over of the expired lock")
		l, ok, err := quick.TryLead(ctx, "scheduler")
		require.NoError(t, err)
		if ok {
			lease = l
			break
		}
		<-time.After(100 * time.Millisecond) // polling interval
	}
	assert.False(t, sessionLingers(t, admin, holder), "the expired holder's session was terminated")
	assert.Error(t, gone.Ping(ctx), "the expired holder's connection is dead")
	require.NoError(t, lease.Release(ctx))
}

// A live leader pings its session every check interval: a standby trying
// for several TTLs never takes its lock.
func TestLeaseLiveLeaderKept(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	opt := postgres.WithLeaseCheckInterval(100 * time.Millisecond) // 1 s TTL
	leader, err := postgres.New(ctx, dsn, discard(), clockwork.NewFakeClockAt(storetest.Now()), opt)
	require.NoError(t, err)
	t.Cleanup(leader.Close)
	standby, err := postgres.New(ctx, dsn, discard(), clockwork.NewFakeClockAt(storetest.Now()), opt)
	require.NoError(t, err)
	t.Cleanup(standby.Close)

	l, ok, err := leader.TryLead(ctx, "scheduler")
	require.NoError(t, err)
	require.True(t, ok)
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); { // three TTLs of attempts
		_, ok, err := standby.TryLead(ctx, "scheduler")
		require.NoError(t, err)
		require.False(t, ok, "the standby took a live leader's lock")
	}
	assert.False(t, isClosed(l.Lost()), "the leader lost its lock")
	require.NoError(t, l.Release(ctx))
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// blackhole is a TCP proxy to target. swallow makes every connection open
// so far go silent for good, as across a partition: nothing more is
// forwarded either way and nothing is closed, so the server never hears of
// the client again. Connections opened later are forwarded.
type blackhole struct {
	ln net.Listener

	mu    sync.Mutex
	pairs []*pipePair
	wg    sync.WaitGroup
}

type pipePair struct {
	client, server net.Conn
	silent         atomic.Bool
}

func newBlackhole(t *testing.T, target string) *blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	h := &blackhole{ln: ln}
	h.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed at cleanup
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p := &pipePair{client: c, server: s}
			h.mu.Lock()
			h.pairs = append(h.pairs, p)
			h.mu.Unlock()
			h.wg.Go(func() { p.pipe(s, c) })
			h.wg.Go(func() { p.pipe(c, s) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		h.mu.Lock()
		for _, p := range h.pairs {
			_ = p.client.Close()
			_ = p.server.Close()
		}
		h.mu.Unlock()
		h.wg.Wait()
	})
	return h
}

func (h *blackhole) addr() string { return h.ln.Addr().String() }

func (h *blackhole) swallow() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.pairs {
		p.silent.Store(true)
	}
}

func (p *pipePair) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if p.silent.Load() {
			if err != nil {
				return // the close is swallowed too
			}
			continue
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil { // io.EOF included: one side ended, end both
			_ = dst.Close()
			_ = src.Close()
			return
		}
	}
}
