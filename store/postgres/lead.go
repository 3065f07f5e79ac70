package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mockstagram/pipeline/store"
)

// TryLead implements store.Store with a session advisory lock
// (pg_try_advisory_lock(hashtext(name))) on a dedicated connection taken out
// of the pool. While held, a goroutine pings that connection every lease
// check interval; when a ping fails the lock must be presumed gone (the
// session, and with it the lock, dies with the connection), so Lost is
// closed and the connection is dropped.
func (s *Store) TryLead(ctx context.Context, name string) (store.Lease, bool, error) {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("lead %q: acquire connection: %w", name, err)
	}
	conn := pc.Hijack()
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext($1))`, name).Scan(&ok); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx)) // the query error is the one worth returning
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
		logger:   s.logger.With(slog.String("lease", name)),
		interval: s.leaseCheckInterval,
		lost:     make(chan struct{}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go l.watch() //nolint:gosec // G118: the lease outlives TryLead's ctx; Release stops the watcher
	return l, true, nil
}

type lease struct {
	name     string
	conn     *pgx.Conn // used by watch until done is closed, then by Release
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
		// Closing the session releases the lock even if the unlock failed.
		closeErr := l.conn.Close(context.WithoutCancel(ctx))
		if err = errors.Join(err, closeErr); err != nil {
			l.releaseErr = fmt.Errorf("release lead %q: %w", l.name, err)
		}
	})
	return l.releaseErr
}
