// Command faultproxy is a TCP proxy for fault-injection runs on loopback
// (scripts/faults.sh): it forwards --listen to --target and, on request,
// behaves like a network partition.
//
//	go run ./scripts/faultproxy --listen 127.0.0.1:16432 --target 127.0.0.1:5432 --control 127.0.0.1:16433
//	curl -X POST 127.0.0.1:16433/silent   # partition: nothing passes, connections hang
//	curl -X POST 127.0.0.1:16433/pass     # network back: held bytes are delivered
//	curl -X POST 127.0.0.1:16433/refuse   # new connections are closed, existing ones reset
//
// "silent" is what a real partition does and a refused connection does not:
// bytes written on either side are held (TCP retransmits them later), new
// connections are accepted but not connected through until the network is
// back, and a side that closes its connection during the partition is never
// told to the other side — its peer keeps a connection that will never hear
// anything again (like a server whose TCP keepalive is 2 hours).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:16432", "address to accept on")
	target := flag.String("target", "127.0.0.1:5432", "address to forward to")
	control := flag.String("control", "127.0.0.1:16433", "HTTP control address (POST /pass, /silent, /refuse)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, *listen, *target, *control); err != nil {
		log.Error("faultproxy", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, listen, target, control string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	p := &proxy{target: target, log: log}
	p.cond = sync.NewCond(&p.mu)
	p.mode = "pass"

	mux := http.NewServeMux()
	for _, m := range []string{"pass", "silent", "refuse"} {
		mux.HandleFunc("POST /"+m, func(w http.ResponseWriter, _ *http.Request) {
			p.set(m)
			fmt.Fprintln(w, m)
		})
	}
	mux.HandleFunc("GET /", func(w http.ResponseWriter, _ *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		fmt.Fprintf(w, "%s %d connections\n", p.mode, len(p.conns))
	})
	srv := &http.Server{Addr: control, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	cln, err := net.Listen("tcp", control)
	if err != nil {
		return fmt.Errorf("listen control: %w", err)
	}
	go func() { _ = srv.Serve(cln) }()
	go func() {
		<-ctx.Done()
		_ = ln.Close()
		_ = srv.Close()
	}()
	log.Info("faultproxy", "listen", listen, "target", target, "control", control)
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil //nolint:nilerr // the listener was closed on shutdown
			}
			return fmt.Errorf("accept: %w", err)
		}
		go p.serve(c)
	}
}

type proxy struct {
	target string
	log    *slog.Logger

	mu    sync.Mutex
	cond  *sync.Cond // broadcast when mode changes
	mode  string
	conns map[net.Conn]struct{} // every open connection, both sides
}

func (p *proxy) set(mode string) {
	p.mu.Lock()
	p.mode = mode
	var reset []net.Conn
	if mode == "refuse" {
		for c := range p.conns {
			reset = append(reset, c)
		}
	}
	p.cond.Broadcast()
	p.mu.Unlock()
	for _, c := range reset {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, like a refused network
		}
		_ = c.Close()
	}
	p.log.Info("mode", "mode", mode, "reset", len(reset))
}

// waitPass blocks until the mode is pass (true) or refuse (false).
func (p *proxy) waitPass() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.mode == "silent" {
		p.cond.Wait()
	}
	return p.mode == "pass"
}

func (p *proxy) silent() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode == "silent"
}

func (p *proxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		p.conns = map[net.Conn]struct{}{}
	}
	if on {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *proxy) serve(client net.Conn) {
	p.track(client, true)
	defer p.track(client, false)
	if !p.waitPass() { // a connection opened during a partition hangs until it ends
		_ = client.Close()
		return
	}
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		p.log.Warn("dial", "err", err)
		_ = client.Close()
		return
	}
	p.track(server, true)
	defer p.track(server, false)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(server, client) }()
	go func() { defer wg.Done(); p.pipe(client, server) }()
	wg.Wait()
}

// pipe copies src to dst, holding every chunk while the network is silent. A
// close of src seen during a partition is never passed on: dst stays open
// and silent for as long as the proxy runs.
func (p *proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitPass() {
				_ = dst.Close()
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				_ = src.Close()
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				p.log.Debug("read", "err", err)
			}
			if p.silent() {
				p.hold(dst) // the close is lost in the partition
				return
			}
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			} else {
				_ = dst.Close()
			}
			return
		}
	}
}

// hold keeps c open and unread until the proxy is told to refuse. (A real
// partition would also drop the peer's keepalive probes; a user-space proxy
// cannot, so a peer relying on keepalives alone is not tested here.)
func (p *proxy) hold(c net.Conn) {
	p.log.Info("close lost in the partition; peer keeps a dead connection", "peer", c.RemoteAddr())
	p.mu.Lock()
	for p.mode != "refuse" {
		p.cond.Wait()
	}
	p.mu.Unlock()
	_ = c.Close()
}
