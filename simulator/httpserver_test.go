package simulator

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startHTTP serves s on a loopback port, with the lean server (lean) or
// net/http alone, and returns its address; the server stops at the end of
// the test.
func startHTTP(t *testing.T, s *Server, lean bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	serve, shutdown := srv.Serve, srv.Shutdown
	if lean {
		h := NewHTTPServer(s, srv)
		serve, shutdown = h.Serve, h.Shutdown
	}
	errc := make(chan error, 1)
	go func() { errc <- serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve returned %v, want http.ErrServerClosed", err)
		}
	})
	return ln.Addr().String()
}

// rawConn is a client connection reading whole raw responses.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *rawConn) send(req string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, req); err != nil {
		r.t.Fatal(err)
	}
}

var dateRE = regexp.MustCompile(`(?m)^Date: [^\r]*\r$`)

// response reads one response with a Content-Length and returns its bytes,
// the Date header's value replaced by DATE (after checking it parses).
func (r *rawConn) response() string {
	r.t.Helper()
	var head strings.Builder
	length := -1
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			r.t.Fatalf("reading response head: %v (so far %q)", err, head.String())
		}
		head.WriteString(line)
		if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
			if length, err = strconv.Atoi(strings.TrimSpace(v)); err != nil {
				r.t.Fatal(err)
			}
		}
		if v, ok := strings.CutPrefix(line, "Date: "); ok {
			if _, err := http.ParseTime(strings.TrimSpace(v)); err != nil {
				r.t.Errorf("Date %q: %v", v, err)
			}
		}
		if line == "\r\n" {
			break
		}
	}
	if length < 0 {
		r.t.Fatalf("response without Content-Length: %q", head.String())
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(r.br, body); err != nil {
		r.t.Fatal(err)
	}
	return dateRE.ReplaceAllString(head.String(), "Date: DATE\r") + string(body)
}

func getRequest(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: sim\r\nUser-Agent: test\r\nAccept-Encoding: gzip\r\n\r\n"
}

// TestHTTPServerSameBytesAsNetHTTP sends the same requests to the lean server
// and to net/http serving the same handler: the answers are identical bytes
// (but for the Date value), for data, unknown and withheld pks and bad pks.
func TestHTTPServerSameBytesAsNetHTTP(t *testing.T) {
	t.Parallel()
	cfg := Config{Mode: Deterministic, UnknownRate: 0.3}
	lean, clock := newServer(t, cfg)
	std, stdClock := newServer(t, cfg)
	clock.Advance(90 * time.Second)
	stdClock.Advance(90 * time.Second)
	leanConn := dial(t, startHTTP(t, lean, true))
	stdConn := dial(t, startHTTP(t, std, false))

	withheld := int64(0)
	for pk := testRange.From; pk <= testRange.To && withheld == 0; pk++ {
		if !lean.Known(pk) {
			withheld = pk
		}
	}
	paths := []string{
		pathPrefix + strconv.FormatInt(knownPK, 10),
		pathPrefix + strconv.FormatInt(testRange.To, 10),
		pathPrefix + strconv.FormatInt(withheld, 10),
		pathPrefix + "1",                   // outside the range
		pathPrefix + "0",                   // not positive
		pathPrefix + "999999999999999999",  // 18 digits
		pathPrefix + "1234567890123456789", // 19 digits: not a pk
	}
	for _, p := range paths {
		leanConn.send(getRequest(p))
		stdConn.send(getRequest(p))
		got, want := leanConn.response(), stdConn.response()
		if got != want {
			t.Errorf("GET %s:\nlean     %q\nnet/http %q", p, got, want)
		}
	}
	if !strings.Contains(stdConn.responseOf(t, pathPrefix+strconv.FormatInt(knownPK, 10)), `"pk":1000001`) {
		t.Error("net/http answer lacks the sample")
	}
	if got := lean.Requests(); got != int64(len(paths)) {
		t.Errorf("lean server counted %d GETs, want %d", got, len(paths))
	}
}

func (r *rawConn) responseOf(t *testing.T, path string) string {
	t.Helper()
	r.send(getRequest(path))
	return r.response()
}

// TestHTTPServerRandomWalkSameSequence: the lean server draws the same
// random-walk steps as the handler for the same sequence of GETs.
func TestHTTPServerRandomWalkSameSequence(t *testing.T) {
	t.Parallel()
	lean, _ := newServer(t, Config{Seed: 42})
	ref, _ := newServer(t, Config{Seed: 42})
	conn := dial(t, startHTTP(t, lean, true))
	for i := range 20 {
		pk := strconv.FormatInt(knownPK+int64(i%3), 10)
		resp := conn.responseOf(t, pathPrefix+pk)
		_, body, _ := strings.Cut(resp, "\r\n\r\n")
		if want := get(ref, pk).Body.String(); body != want {
			t.Fatalf("GET %d of %s: lean %q, handler %q", i, pk, body, want)
		}
	}
}

// TestHTTPServerPipelined answers requests sent in one write, in order.
func TestHTTPServerPipelined(t *testing.T) {
	t.Parallel()
	s, clock := newServer(t, Config{Mode: Deterministic})
	conn := dial(t, startHTTP(t, s, true))
	var batch strings.Builder
	for i := range 50 {
		batch.WriteString(getRequest(pathPrefix + strconv.FormatInt(knownPK+int64(i), 10)))
	}
	conn.send(batch.String())
	for i := range 50 {
		pk := knownPK + int64(i)
		f, g := Counts(pk, clock.Now())
		if _, body, _ := strings.Cut(conn.response(), "\r\n\r\n"); body != sampleBody(pk, f, g) {
			t.Fatalf("answer %d = %q, want %q", i, body, sampleBody(pk, f, g))
		}
	}
}

// TestHTTPServerHandsOff: a request the fast path does not take goes to
// net/http with the connection, which keeps answering on it.
func TestHTTPServerHandsOff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, request, wantStatus, wantBody string
	}{
		{"is_suspicious", "POST " + pathPrefix + suspiciousPath + " HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\nContent-Length: " +
			strconv.Itoa(len(suspiciousBody(knownPK))) + "\r\n\r\n" + suspiciousBody(knownPK),
			"HTTP/1.1 200 OK", fmt.Sprintf(`{"pk":%d,"suspicious":%t}`, knownPK, Suspicious(knownPK))},
		{"unknown route", getRequest("/api/v2/x"), "HTTP/1.1 404 Not Found", body404},
		{"HTTP/1.0", "GET " + pathPrefix + "1000001 HTTP/1.0\r\nHost: sim\r\nConnection: keep-alive\r\n\r\n", "HTTP/1.0 200 OK", `{"pk":1000001,`},
		{"body on a GET", "GET " + pathPrefix + "1000001 HTTP/1.1\r\nHost: sim\r\nContent-Length: 2\r\n\r\nhi", "HTTP/1.1 200 OK", `{"pk":1000001,`},
		{"no Host", "GET " + pathPrefix + "1000001 HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request", ""},
		{"header larger than the buffer", "GET " + pathPrefix + "1000001 HTTP/1.1\r\nHost: sim\r\nX-Big: " + strings.Repeat("b", 5000) + "\r\n\r\n",
			"HTTP/1.1 200 OK", `{"pk":1000001,`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, _ := newServer(t, Config{Mode: Deterministic, SuspiciousNoDelay: true})
			conn := dial(t, startHTTP(t, s, true))
			conn.send(tc.request)
			resp, err := http.ReadResponse(conn.br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if status := fmt.Sprintf("%s %d %s", resp.Proto, resp.StatusCode, http.StatusText(resp.StatusCode)); status != tc.wantStatus || !strings.HasPrefix(string(body), tc.wantBody) {
				t.Fatalf("answer %s %q, want %s %q", status, body, tc.wantStatus, tc.wantBody)
			}
			if resp.Close {
				return // net/http closes after HTTP/1.0 and bad requests
			}
			// net/http owns the connection now and keeps answering GETs on it.
			if got := conn.responseOf(t, pathPrefix+"1000002"); !strings.Contains(got, `{"pk":1000002,`) {
				t.Errorf("GET after hand-off = %q", got)
			}
		})
	}
}

// TestHTTPServerNotPlainUsesNetHTTP: with faults, latency or a queue the lean
// server leaves everything to net/http.
func TestHTTPServerNotPlainUsesNetHTTP(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{
		{ErrorRate: 1}, {Latency: time.Millisecond}, {LatencyJitter: time.Millisecond}, {SpikeRate: 0.5},
		{Capacity: 100}, {MaxInFlight: 1}, {TimeoutRate: 0.1}, {MalformedRate: 0.1}, {OversizeRate: 0.1}, {RateLimitRate: 0.1},
	} {
		s, _ := newServer(t, cfg)
		if NewHTTPServer(s, &http.Server{}).fast {
			t.Errorf("fast path on for %+v", cfg)
		}
	}
	s, _ := newServer(t, Config{ErrorRate: 1, Seed: 3})
	conn := dial(t, startHTTP(t, s, true))
	if got := conn.responseOf(t, pathPrefix+"1000001"); !strings.HasPrefix(got, "HTTP/1.1 5") {
		t.Errorf("answer with error rate 1 = %q", got)
	}
	for _, cfg := range []Config{{}, {Mode: Deterministic, UnknownRate: 0.5}, {SpikeLatency: time.Second}} {
		s, _ := newServer(t, cfg)
		if !NewHTTPServer(s, &http.Server{}).fast {
			t.Errorf("fast path off for %+v", cfg)
		}
	}
}

// TestHTTPServerShutdownClosesIdleConnections: Shutdown ends idle keep-alive
// connections on both paths and returns; Serve returns ErrServerClosed.
func TestHTTPServerShutdownClosesIdleConnections(t *testing.T) {
	t.Parallel()
	s, _ := newServer(t, Config{Mode: Deterministic, SuspiciousNoDelay: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := NewHTTPServer(s, &http.Server{IdleTimeout: time.Hour})
	errc := make(chan error, 1)
	go func() { errc <- h.Serve(ln) }()
	fast := dial(t, ln.Addr().String())
	fast.responseOf(t, pathPrefix+"1000001")
	slow := dial(t, ln.Addr().String())
	slow.responseOf(t, "/nowhere")

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve = %v, want ErrServerClosed", err)
	}
	for name, c := range map[string]*rawConn{"fast": fast, "handed off": slow} {
		if n, err := c.br.Read(make([]byte, 1)); err == nil {
			t.Errorf("%s connection still open after Shutdown (read %d bytes)", name, n)
		}
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("still accepting after Shutdown")
	}
}

func TestPlainGET(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		head, pk string // pk "" = not plain
	}{
		{"GET /api/v1/influencers/123 HTTP/1.1\r\nHost: x\r\n\r\n", "123"},
		{"GET /api/v1/influencers/123 HTTP/1.1\r\nhost: x\r\nAccept: */*\r\nUser-Agent: Go-http-client/1.1\r\n\r\n", "123"},
		{"GET /api/v1/influencers/123 HTTP/1.1\r\n\r\n", ""},                                 // no Host
		{"GET /api/v1/influencers/123 HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", ""},           // two Hosts
		{"GET /api/v1/influencers/123 HTTP/1.0\r\nHost: x\r\n\r\n", ""},                      // HTTP/1.0
		{"GET /api/v1/influencers/12a HTTP/1.1\r\nHost: x\r\n\r\n", ""},                      // not digits
		{"GET /api/v1/influencers/ HTTP/1.1\r\nHost: x\r\n\r\n", ""},                         // no pk
		{"GET /api/v1/influencers/1234567890123456789 HTTP/1.1\r\nHost: x\r\n\r\n", ""},      // 19 digits
		{"GET /api/v1/influencers/123?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", ""},                  // query
		{"HEAD /api/v1/influencers/123 HTTP/1.1\r\nHost: x\r\n\r\n", ""},                     // HEAD
		{"GET /api/v1/influencers/123 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", ""}, // close
		{"GET /api/v1/influencers/123 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", ""}, // body headers
		{"GET /api/v1/influencers/123 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", ""},
		{"GET /api/v1/influencers/123 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n", ""},
		{"GET /api/v1/influencers/123 HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", ""}, // continuation line
		{"GET /api/v1/influencers/123 HTTP/1.1\r\nHost : x\r\n\r\n", ""},           // space in name
		{"GET /api/v1/influencers/123 HTTP/1.1\r\nHost: x\r\n", ""},                // incomplete
	} {
		pk, ok := plainGET([]byte(tc.head))
		if string(pk) != tc.pk || ok != (tc.pk != "") {
			t.Errorf("plainGET(%q) = %q, %v; want %q", tc.head, pk, ok, tc.pk)
		}
	}
}

func TestPeekHead(t *testing.T) {
	t.Parallel()
	two := "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\n"
	br := bufio.NewReaderSize(strings.NewReader(two), 64)
	head, err := peekHead(br)
	if err != nil || string(head) != "GET /a HTTP/1.1\r\nHost: x\r\n\r\n" {
		t.Fatalf("peekHead = %q, %v", head, err)
	}
	if _, err := br.Discard(len(head)); err != nil {
		t.Fatal(err)
	}
	if head, err := peekHead(br); !errors.Is(err, io.EOF) {
		t.Errorf("incomplete second head: %q, %v; want io.EOF", head, err)
	}
	big := bufio.NewReaderSize(bytes.NewReader(bytes.Repeat([]byte("x"), 100)), 16)
	if head, err := peekHead(big); err != nil || len(head) != 16 {
		t.Errorf("head larger than the buffer: %d bytes, %v; want the 16 buffered", len(head), err)
	}
}

func TestSampleLen(t *testing.T) {
	t.Parallel()
	values := []int64{0, 1, 9, 10, 99, 100, 12345, 999_999, 1_000_000, 9_999_999_999, math.MaxInt64, -1, -10, math.MinInt64}
	for _, pk := range values {
		for _, f := range values {
			for _, g := range []int64{0, 7, 1500, -3} {
				want := len(appendSample(nil, pk, f, g)) + 1
				if got := sampleLen(pk, f, g); got != want {
					t.Fatalf("sampleLen(%d, %d, %d) = %d, want %d", pk, f, g, got, want)
				}
			}
		}
	}
}
