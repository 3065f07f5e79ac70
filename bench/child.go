package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// StopTimeout is how long a stopped child process may take after SIGTERM
// before it is killed.
const StopTimeout = 20 * time.Second

// child is a process of the benchmark's binary (a simulator, a broker, a
// pipeline stage), killed with the benchmark if that dies (Pdeathsig) and
// bounded by the context it was started with.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	stop context.CancelFunc
}

// startChild starts bin args with env, its output appended to
// dir/name.log. Stopping it (stop, or the end of ctx) sends SIGTERM, then
// SIGKILL after StopTimeout.
func startChild(ctx context.Context, dir, name, bin string, env []string, args ...string) (*child, error) {
	logf, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: log: %w", name, err)
	}
	cctx, stop := context.WithCancel(ctx)
	cmd := exec.CommandContext(cctx, bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = StopTimeout
	if err := cmd.Start(); err != nil {
		stop()
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{}), stop: stop}
	go func() {
		c.err = cmd.Wait()
		logf.Close()
		close(c.done)
	}()
	return c, nil
}

// PID is the child's process id.
func (c *child) PID() int { return c.cmd.Process.Pid }

// Stop stops the child and waits for it.
func (c *child) Stop() {
	c.stop()
	<-c.done
}

// exited reports whether the child has ended, and how.
func (c *child) exited() (bool, error) {
	select {
	case <-c.done:
		return true, c.err
	default:
		return false, nil
	}
}

// freeAddr is a free loopback TCP address (free when asked: another
// process could take it before the child listens, which fails the start).
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitHTTP polls url until it answers 200 or c exits or the timeout ends.
func waitHTTP(ctx context.Context, c *child, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if done, err := c.exited(); done {
			return fmt.Errorf("%s exited before it was ready: %w (see its log)", c.name, err)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s within %s: %w", c.name, url, timeout, ctx.Err())
		case <-tick.C:
		}
	}
}

// waitTCP polls addr until it accepts a connection or c exits or the timeout ends.
func waitTCP(ctx context.Context, c *child, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	for {
		if done, err := c.exited(); done {
			return fmt.Errorf("%s exited before it was ready: %w (see its log)", c.name, err)
		}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
			return nil
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%s not listening on %s within %s", c.name, addr, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
