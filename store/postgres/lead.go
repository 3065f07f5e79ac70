package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mockstagram/pipeline/store"
)

// takeOverWait bounds how long TryLead waits for the lock after it
// terminated the session holding it (the backend exits within
// milliseconds; a live scheduler taking the lock first makes it give up).
const takeOverWait = 2 * time.Second

// leaseTTL is how long the holder of a lock may stay silent before TryLead
// presumes it dead: a live lease pings every check interval. Every process
// sharing a database must use the same check interval.
func (s *Store) leaseTTL() time.Duration { return max(3*s.leaseCheckInterval, time.Second) }

// TryLead implements store.Store with a session advisory lock
// (pg_try_advisory_lock(hashtext(name))) on a dedicated connection taken out
// of the pool. While held, a goroutine pings that connection every lease
// check interval; when a ping fails the lock must be presumed lost, so Lost
// is closed and the connection is dropped.
//
// A lost lease's session may live on at the server with the lock: over a
// partitioned network the client gives up on the connection and the server
// never hears of it (its TCP keepalive takes hours by default). TryLead
// takes such a lock back:
//   - this store remembers the backend (pid and start time) of every lease it
//     lost without unlocking, and terminates those sessions first;
//   - a holder whose session has been idle for longer than the lease TTL
//     (three check intervals) has missed its pings: its lease expired, and
//     whoever finds it (a standby, a restarted process) terminates it.
//
// A live holder, this store's own or another process's, is never
// terminated. The lock session also asks the server for TCP keepalives
// (a vanished client is noticed within a minute).
func (s *Store) TryLead(ctx context.Context, name string) (store.Lease, bool, error) {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("lead %q: acquire connection: %w", name, err)
	}
	conn := pc.Hijack()
	sess, ok, err := s.lock(ctx, conn, name)
	if err != nil {
		_ = conn.Close(context.WithoutCancel(ctx)) // the lock error is the one worth returning
		return nil, false, fmt.Errorf("lead %q: %w", name, err)
	}
	if !ok {
		if err := conn.Close(ctx); err != nil {
			return nil, false, fmt.Errorf("lead %q: close connection: %w", name, err)
		}
		return nil, false, nil
	}
	l := &lease{
		name:     name,
		conn:     conn,
		session:  sess,
		stale:    &s.stale,
		logger:   s.logger.With(slog.String("lease", name)),
		interval: s.leaseCheckInterval,
		lost:     make(chan struct{}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go l.watch() //nolint:gosec // G118: the lease outlives TryLead's ctx; Release stops the watcher
	return l, true, nil
}

// lock sets the dedicated session up and takes the lock, from a stale or
// expired holder if need be.
func (s *Store) lock(ctx context.Context, conn *pgx.Conn, name string) (session, bool, error) {
	var sess session
	if _, err := conn.Exec(ctx, `SELECT set_config('application_name', $1, false),
	set_config('lock_timeout', $2, false),
	set_config('tcp_keepalives_idle', '15', false),
	set_config('tcp_keepalives_interval', '5', false),
	set_config('tcp_keepalives_count', '3', false)`,
		"mockstagram lease "+name, fmt.Sprintf("%dms", takeOverWait.Milliseconds())); err != nil {
		return sess, false, fmt.Errorf("set up the lock session: %w", err)
	}
	if err := conn.QueryRow(ctx, `SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()`).
		Scan(&sess.pid, &sess.started); err != nil {
		return sess, false, fmt.Errorf("lock session: %w", err)
	}
	terminated, err := s.terminateStale(ctx, conn)
	if err != nil {
		return sess, false, err
	}
	ok, err := tryLock(ctx, conn, name, terminated > 0)
	if err != nil || ok {
		return sess, ok, err
	}
	// Held elsewhere: by a live scheduler, or by one whose lease expired.
	var expired int
	if err := conn.QueryRow(ctx, `
SELECT count(*) FILTER (WHERE pg_terminate_backend(a.pid))
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = ((hashtext($1)::bigint >> 32) & 4294967295)::oid
  AND l.objid = (hashtext($1)::bigint & 4294967295)::oid
  AND a.pid <> pg_backend_pid()
  AND a.state = 'idle' AND a.state_change < now() - $2 * interval '1 millisecond'`,
		name, s.leaseTTL().Milliseconds()).Scan(&expired); err != nil {
		return sess, false, fmt.Errorf("check the lock's holder: %w", err)
	}
	if expired == 0 {
		return sess, false, nil // a live holder
	}
	s.logger.WarnContext(ctx, "leadership lock taken over from a holder whose lease expired",
		slog.String("lease", name), slog.Duration("ttl", s.leaseTTL()))
	ok, err = tryLock(ctx, conn, name, true)
	return sess, ok, err
}

// terminateStale terminates the sessions of leases this store lost without
// unlocking; it returns how many were still there.
func (s *Store) terminateStale(ctx context.Context, conn *pgx.Conn) (int, error) {
	stale := s.stale.take()
	if len(stale) == 0 {
		return 0, nil
	}
	pids := make([]int32, len(stale))
	started := make([]time.Time, len(stale))
	for i, x := range stale {
		pids[i], started[i] = int32(x.pid), x.started //nolint:gosec // G115: backend pids fit in int4
	}
	var n int
	err := conn.QueryRow(ctx, `
SELECT count(*) FILTER (WHERE pg_terminate_backend(a.pid))
FROM pg_stat_activity a
JOIN unnest($1::int4[], $2::timestamptz[]) AS s(pid, started) ON a.pid = s.pid AND a.backend_start = s.started`,
		pids, started).Scan(&n)
	if err != nil {
		s.stale.add(stale...)
		return 0, fmt.Errorf("terminate stale lock sessions: %w", err)
	}
	if n > 0 {
		s.logger.WarnContext(ctx, "terminated this process's stale leadership sessions", slog.Int("sessions", n))
	}
	return n, nil
}

// tryLock takes the lock at once, or, with wait (its holder was just
// terminated), within the session's lock_timeout.
func tryLock(ctx context.Context, conn *pgx.Conn, name string, wait bool) (bool, error) {
	if !wait {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext($1))`, name).Scan(&ok); err != nil {
			return false, err
		}
		return ok, nil
	}
	_, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtext($1))`, name)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55P03" { // lock_not_available: someone else took it
		return false, nil
	}
	return err == nil, err
}

// session identifies a server backend (pids are reused; start times tell
// sessions apart).
type session struct {
	pid     uint32
	started time.Time
}

// staleSessions are the sessions of leases lost without unlocking. The zero
// value is empty and ready to use.
type staleSessions struct {
	mu  sync.Mutex
	all []session
}

func (s *staleSessions) add(xs ...session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all = append(s.all, xs...)
}

// take returns and forgets them all.
func (s *staleSessions) take() []session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.all
	s.all = nil
	return out
}

type lease struct {
	name     string
	conn     *pgx.Conn // used by watch until done is closed, then by Release
	session  session
	stale    *staleSessions // where a lease lost without unlocking goes
	logger   *slog.Logger
	interval time.Duration

	lost     chan struct{}
	lostOnce sync.Once
	stop     chan struct{} // closed by Release
	done     chan struct{} // closed when watch returns
	// connClosed is set by watch before done is closed.
	connClosed bool

	releaseOnce sync.Once
	releaseErr  error
}

func (l *lease) Lost() <-chan struct{} { return l.lost }

func (l *lease) markLost() { l.lostOnce.Do(func() { close(l.lost) }) }

// watch pings the lock's connection until Release or until a ping fails.
func (l *lease) watch() {
	defer close(l.done)
	ticker := time.NewTicker(l.interval)
	defer ticker.Stop()
	timeout := max(l.interval, 2*time.Second)
	for {
		select {
		case <-l.stop:
			return
		case <-ticker.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := l.conn.Ping(ctx)
		cancel()
		if err == nil {
			continue
		}
		l.logger.Warn("leadership lock lost: connection check failed", slog.String("error", err.Error()))
		// The session may live on at the server, holding the lock: the next
		// TryLead terminates it.
		l.stale.add(l.session)
		l.markLost()
		closeCtx, cancel := context.WithTimeout(context.Background(), timeout)
		_ = l.conn.Close(closeCtx) // already broken; the lock is gone either way
		cancel()
		l.connClosed = true
		return
	}
}

// Release unlocks, stops the watcher and closes the dedicated connection.
// It closes Lost too, so anyone waiting on it wakes up. Calling it again
// returns the first result.
func (l *lease) Release(ctx context.Context) error {
	l.releaseOnce.Do(func() {
		close(l.stop)
		<-l.done
		defer l.markLost()
		if l.connClosed {
			return
		}
		var unlocked bool
		err := l.conn.QueryRow(ctx, `SELECT pg_advisory_unlock(hashtext($1))`, l.name).Scan(&unlocked)
		if err != nil {
			// Closing the session releases the lock, unless the server
			// cannot hear it: the next TryLead terminates the session.
			l.stale.add(l.session)
		}
		closeErr := l.conn.Close(context.WithoutCancel(ctx))
		if err = errors.Join(err, closeErr); err != nil {
			l.releaseErr = fmt.Errorf("release lead %q: %w", l.name, err)
		}
	})
	return l.releaseErr
}
