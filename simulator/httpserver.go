package simulator

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// HTTPServer serves a Server over HTTP/1.1 at a fraction of net/http's CPU
// per request. The hot request, a plain keep-alive GET of an influencer on a
// Server without queue, latency or faults, is parsed and answered on the
// connection itself: no http.Request, no header map, no goroutine, no
// deadline per request. The first request of a connection that is anything
// else (another route or method, a body, HTTP/1.0, Connection or Expect
// headers, a head that does not fit the read buffer) hands the connection,
// buffered bytes included, to the wrapped http.Server for the rest of its
// life, so every other behaviour is net/http's. A Server that is not plain
// is served by net/http alone.
//
// Answers are the same bytes as net/http writes for the Server's handler.
type HTTPServer struct {
	sim  *Server
	srv  *http.Server
	fast bool

	handoff *handoffListener
	serving sync.Once

	mu       sync.Mutex
	ln       net.Listener
	conns    map[net.Conn]struct{} // connections served on the fast path
	closing  bool
	connsWG  sync.WaitGroup
	shutdown atomic.Bool

	date atomic.Pointer[dateLine]
}

// NewHTTPServer returns an HTTPServer for sim, handing other requests to srv,
// which it configures with sim as its Handler. srv's Addr is used by
// ListenAndServe; its IdleTimeout (or ReadTimeout) bounds idle fast-path
// connections too.
func NewHTTPServer(sim *Server, srv *http.Server) *HTTPServer {
	srv.Handler = sim
	return &HTTPServer{
		sim:     sim,
		srv:     srv,
		fast:    sim.plain(),
		handoff: newHandoffListener(),
		conns:   map[net.Conn]struct{}{},
	}
}

// ListenAndServe listens on the http.Server's Addr (":http" if empty) and
// serves; like http.Server it returns http.ErrServerClosed after Shutdown or
// Close.
func (h *HTTPServer) ListenAndServe() error {
	addr := h.srv.Addr
	if addr == "" {
		addr = ":http"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return h.Serve(ln)
}

// Serve accepts connections on ln until Shutdown or Close; call it once.
func (h *HTTPServer) Serve(ln net.Listener) error {
	if !h.fast {
		return h.srv.Serve(ln)
	}
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		_ = ln.Close()
		return http.ErrServerClosed
	}
	h.ln = ln
	h.mu.Unlock()
	h.serving.Do(func() {
		// Returns when Shutdown or Close closes the hand-off listener.
		go func() { _ = h.srv.Serve(h.handoff) }()
	})
	for {
		c, err := ln.Accept()
		if err != nil {
			if h.shutdown.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		if !h.track(c) {
			_ = c.Close()
			return http.ErrServerClosed
		}
		go h.serveConn(c)
	}
}

// Shutdown stops accepting, lets every fast-path connection finish the
// request it is answering, closes it, and shuts the http.Server down
// gracefully, all within ctx.
func (h *HTTPServer) Shutdown(ctx context.Context) error {
	if !h.fast {
		return h.srv.Shutdown(ctx)
	}
	h.stop()
	done := make(chan struct{})
	go func() { h.connsWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		h.closeConns()
		return ctx.Err()
	}
	return h.srv.Shutdown(ctx)
}

// Close closes the listener and every connection at once.
func (h *HTTPServer) Close() error {
	if !h.fast {
		return h.srv.Close()
	}
	h.stop()
	h.closeConns()
	return h.srv.Close()
}

// stop closes the listener and wakes the fast-path connections blocked on a
// read, which then close.
func (h *HTTPServer) stop() {
	h.shutdown.Store(true)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closing = true
	if h.ln != nil {
		_ = h.ln.Close()
	}
	_ = h.handoff.Close()
	for c := range h.conns {
		_ = c.SetReadDeadline(time.Unix(1, 0))
	}
}

func (h *HTTPServer) closeConns() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.conns {
		_ = c.Close()
	}
}

func (h *HTTPServer) track(c net.Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
	h.conns[c] = struct{}{}
	h.connsWG.Add(1)
	return true
}

func (h *HTTPServer) untrack(c net.Conn) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
	h.connsWG.Done()
}

// idleTimeout is how long a fast-path connection may wait for its next
// request.
func (h *HTTPServer) idleTimeout() time.Duration {
	if h.srv.IdleTimeout > 0 {
		return h.srv.IdleTimeout
	}
	return h.srv.ReadTimeout
}

// serveConn answers plain GETs on c until it closes, errs, or sends a request
// for net/http.
func (h *HTTPServer) serveConn(c net.Conn) {
	handedOff := false
	defer func() {
		if !handedOff {
			_ = c.Close()
		}
		h.untrack(c)
	}()
	br := bufio.NewReaderSize(c, 4096)
	bw := bufio.NewWriterSize(c, 4096)
	out := make([]byte, 0, 512) // one response
	idle := h.idleTimeout()
	var deadline time.Time // read deadline set on c; refreshed about once a second
	for {
		if br.Buffered() == 0 {
			if bw.Flush() != nil {
				return
			}
			if idle > 0 {
				if now := time.Now(); now.Add(idle).Sub(deadline) > time.Second {
					deadline = now.Add(idle)
					if c.SetReadDeadline(deadline) != nil {
						return
					}
				}
			}
			// After the deadline refresh: stop sets its past deadline after
			// raising the flag, so either we see the flag or it sees us.
			if h.shutdown.Load() {
				return
			}
		}
		head, err := peekHead(br)
		if err != nil {
			return // closed, idle too long, shut down, or a broken head
		}
		rawPK, ok := plainGET(head)
		if !ok || h.shutdown.Load() {
			if bw.Flush() != nil || h.shutdown.Load() {
				return
			}
			if idle > 0 && c.SetReadDeadline(time.Time{}) != nil {
				return
			}
			handedOff = h.handoff.offer(&bufferedConn{Conn: c, r: br})
			return
		}
		if _, err := br.Discard(len(head)); err != nil {
			return
		}
		out = h.answer(out[:0], rawPK)
		if _, err := bw.Write(out); err != nil {
			return
		}
	}
}

// answer appends the response to a plain GET to b: byte for byte what
// net/http writes for Server.ServeHTTP (writeSample or writeNotFound).
func (h *HTTPServer) answer(b, rawPK []byte) []byte {
	s := h.sim
	n := s.requests.Add(1)
	rnd := newRNG(s.cfg.Seed, n)
	pk, ok := parsePKBytes(rawPK)
	if !ok || !s.Known(pk) {
		b = append(b, "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"...)
		b = h.appendDate(b)
		return append(b, notFoundTail...)
	}
	follower, following := s.counts(pk, &rnd)
	b = append(b, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"...)
	b = h.appendDate(b)
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(sampleLen(pk, follower, following)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(appendSample(b, pk, follower, following), '}')
	return b
}

// sampleLen is the length of the sample document writeSample answers.
func sampleLen(pk, follower, following int64) int {
	const fixed = len(`{"pk":,"username":"influencer-","followerCount":,"followingCount":}`)
	return fixed + 2*decimalLen(pk) + decimalLen(follower) + decimalLen(following)
}

// decimalLen is the length of strconv.FormatInt(v, 10).
func decimalLen(v int64) int {
	n := 1
	if v < 0 {
		n++
		if v == math.MinInt64 {
			return 20
		}
		v = -v
	}
	for ; v >= 10; v /= 10 {
		n++
	}
	return n
}

// notFoundTail ends the unknown-pk answer after its Date.
var notFoundTail = "Content-Length: " + strconv.Itoa(len(NotFoundBody)) + "\r\n\r\n" + NotFoundBody

// dateLine is a formatted "Date: ...\r\n" header line for one second.
type dateLine struct {
	unix int64
	line []byte
}

// appendDate appends net/http's Date header, formatted once a second.
func (h *HTTPServer) appendDate(b []byte) []byte {
	now := time.Now()
	d := h.date.Load()
	if d == nil || d.unix != now.Unix() {
		line := append([]byte("Date: "), now.UTC().AppendFormat(nil, http.TimeFormat)...)
		d = &dateLine{unix: now.Unix(), line: append(line, "\r\n"...)}
		h.date.Store(d)
	}
	return append(b, d.line...)
}

// peekHead returns the request head (request line and headers, through the
// blank line) at the start of br's buffer without consuming it. A head that
// does not fit the buffer is returned as far as it is read, without its end,
// so plainGET refuses it.
func peekHead(br *bufio.Reader) ([]byte, error) {
	for {
		n := br.Buffered()
		if n > 0 {
			buf, _ := br.Peek(n)
			if i := bytes.Index(buf, crlfcrlf); i >= 0 {
				return buf[:i+len(crlfcrlf)], nil
			}
			if n == br.Size() {
				return buf, nil
			}
		}
		if _, err := br.Peek(n + 1); err != nil {
			return nil, err
		}
	}
}

var (
	crlfcrlf    = []byte("\r\n\r\n")
	getPrefix   = []byte("GET " + pathPrefix)
	http11CRLF  = []byte(" HTTP/1.1\r\n")
	hostHeader  = []byte("host")
	otherHeader = [][]byte{ // headers that need net/http's handling
		[]byte("content-length"), []byte("transfer-encoding"), []byte("connection"),
		[]byte("expect"), []byte("upgrade"), []byte("trailer"),
	}
)

// plainGET reports whether head is a GET of /api/v1/influencers/{digits} over
// HTTP/1.1 with a Host header and no header that asks for more than a plain
// answer; it returns the pk's digits.
func plainGET(head []byte) ([]byte, bool) {
	if !bytes.HasSuffix(head, crlfcrlf) || !bytes.HasPrefix(head, getPrefix) {
		return nil, false
	}
	rest := head[len(getPrefix):]
	i := 0
	for i < len(rest) && i <= maxPKDigits && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if i == 0 || i > maxPKDigits || !bytes.HasPrefix(rest[i:], http11CRLF) {
		return nil, false
	}
	pk := rest[:i]
	headers := rest[i+len(http11CRLF) : len(rest)-2] // each line ends in \r\n
	hasHost := false
	for len(headers) > 0 {
		end := bytes.Index(headers, crlf)
		line := headers[:end]
		headers = headers[end+2:]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return nil, false // folded or malformed: net/http answers it
		}
		name := line[:colon]
		if bytes.IndexByte(name, ' ') >= 0 || bytes.IndexByte(name, '\t') >= 0 {
			return nil, false
		}
		if bytes.EqualFold(name, hostHeader) {
			if hasHost {
				return nil, false // net/http refuses several Host headers
			}
			hasHost = true
			continue
		}
		for _, o := range otherHeader {
			if bytes.EqualFold(name, o) {
				return nil, false
			}
		}
	}
	if !hasHost {
		return nil, false
	}
	return pk, true
}

var crlf = []byte("\r\n")

// parsePKBytes is parsePK for the digits of a request line.
func parsePKBytes(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > maxPKDigits {
		return 0, false
	}
	var pk int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		pk = pk*10 + int64(c-'0')
	}
	return pk, pk > 0
}

// bufferedConn is a connection whose first bytes were already read into r.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// handoffListener is the net.Listener the http.Server accepts handed-off
// connections from.
type handoffListener struct {
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func newHandoffListener() *handoffListener {
	return &handoffListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// offer gives c to the http.Server; false if the listener is closed.
func (l *handoffListener) offer(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return handoffAddr{} }

type handoffAddr struct{}

func (handoffAddr) Network() string { return "handoff" }
func (handoffAddr) String() string  { return "handoff" }
