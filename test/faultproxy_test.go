package test

import (
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/config"
)

// faultProxy is a TCP proxy for fault injection: it listens on 127.0.0.1:0
// and forwards every connection to target. Two faults:
//   - Cut closes all connections and refuses new ones (the listener is
//     closed: clients get "connection refused");
//   - Silence is a partition: connections are neither forwarded nor closed,
//     new ones are accepted and hang the same way. What is sent meanwhile is
//     held and delivered when the silence ends (as TCP retransmission
//     would), except on a connection whose sender closed it during the
//     silence: its last bytes and its close are lost, and the other end
//     stays open, never knowing, until the proxy is cut (as a server's idle
//     session with a 2-hour keepalive outlives the client's socket).
//
// Restore ends either fault (after Cut it listens on the same address
// again).
type faultProxy struct {
	t      testing.TB
	target string
	addr   string

	mu     sync.Mutex
	ln     net.Listener  // nil while cut
	resume chan struct{} // non-nil while silent; closed when the silence ends
	conns  map[net.Conn]struct{}
	// orphans are the local ports of the target-side connections left open
	// by a close during a silence.
	orphans map[int]bool
	wg      sync.WaitGroup // accept loops and copiers
}

// throughFaultProxy points cfg's database URL at a new fault proxy to the
// database and returns the proxy and the direct URL.
func throughFaultProxy(t testing.TB, cfg *config.Config) (*faultProxy, string) {
	t.Helper()
	direct := cfg.DatabaseURL
	u, err := url.Parse(direct)
	require.NoError(t, err)
	proxy := newFaultProxy(t, u.Host)
	u.Host = proxy.Addr()
	cfg.DatabaseURL = u.String()
	return proxy, direct
}

// newFaultProxy starts a proxy to target; it is closed when the test ends.
func newFaultProxy(t testing.TB, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("fault proxy: %v", err)
	}
	p := &faultProxy{t: t, target: target, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}, orphans: map[int]bool{}}
	p.serve(ln)
	t.Cleanup(func() {
		p.Cut()
		p.wg.Wait()
	})
	return p
}

// Addr is the proxy's host:port.
func (p *faultProxy) Addr() string { return p.addr }

// Cut closes the listener and every proxied connection (a silence ends).
func (p *faultProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
	p.endSilence()
}

// Silence stops forwarding, on every connection, without closing any.
func (p *faultProxy) Silence() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.resume == nil {
		p.resume = make(chan struct{})
	}
}

// Restore ends a silence, or accepts connections again after a cut, on the
// same address.
func (p *faultProxy) Restore() {
	p.t.Helper()
	p.mu.Lock()
	p.endSilence()
	cut := p.ln == nil
	p.mu.Unlock()
	if !cut {
		return
	}
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("fault proxy: listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// endSilence is called with mu held.
func (p *faultProxy) endSilence() {
	if p.resume != nil {
		close(p.resume)
		p.resume = nil
	}
}

// Orphaned says whether the connection to the target from local port port
// (the client port the target sees) was left open by a close during a
// silence.
func (p *faultProxy) Orphaned(port int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.orphans[port]
}

// silence is non-nil while silent, and is closed when the silence ends.
func (p *faultProxy) silence() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.resume
}

func (p *faultProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by Cut
			}
			p.wg.Go(func() { p.forward(c) })
		}
	})
}

func (p *faultProxy) forward(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = client.Close()
		return
	}
	if !p.track(client, server) {
		_ = client.Close()
		_ = server.Close()
		return
	}
	var copiers sync.WaitGroup
	var orphaned atomic.Bool // a side ended during a silence: nothing more happens on the pair
	orphan := func() {
		if orphaned.CompareAndSwap(false, true) {
			p.mu.Lock()
			p.orphans[server.LocalAddr().(*net.TCPAddr).Port] = true
			p.mu.Unlock()
		}
	}
	copiers.Go(func() { p.pipe(server, client, &orphaned, orphan) })
	copiers.Go(func() { p.pipe(client, server, &orphaned, orphan) })
	copiers.Wait()
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
}

// pipe copies src to dst until src ends, then closes both, as a cut
// connection would; during a silence it holds what it reads (see
// faultProxy), and a src ending then orphans the pair.
func (p *faultProxy) pipe(dst, src net.Conn, orphaned *atomic.Bool, orphan func()) {
	chunks := make(chan []byte, 64)
	closeBoth := func() {
		_ = dst.Close()
		_ = src.Close()
	}
	var writer sync.WaitGroup
	writer.Go(func() {
		failed := false
		for b := range chunks {
			if s := p.silence(); s != nil {
				<-s // held until the silence ends (Cut ends it too)
			}
			if failed || orphaned.Load() {
				continue // dropped: dst is gone, or lost with the sender's close
			}
			if _, err := dst.Write(b); err != nil {
				failed = true
				closeBoth() // ends the reader too
			}
		}
		if !orphaned.Load() {
			closeBoth()
		}
	})
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			chunks <- append([]byte(nil), buf[:n]...)
		}
		if err != nil {
			// src ended (a close, or Cut): during a silence that end is lost
			// and dst stays open until Cut.
			if p.silence() != nil {
				orphan()
			}
			break
		}
	}
	close(chunks)
	writer.Wait()
	if orphaned.Load() {
		_ = src.Close() // it ended; dst is left open
	}
}

// track registers a connection pair, unless the proxy was cut meanwhile.
func (p *faultProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}
