package httpapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	chimw "github.com/go-chi/chi/v5/middleware"
	"github.com/go-chi/cors"
	"github.com/klauspost/compress/gzhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// Metrics are the HTTP server's metrics. Their labels are bounded: the
// route is chi's route pattern (never the raw path), the method one of the
// standard ones or OTHER, the code an HTTP status.
type Metrics struct {
	RequestDuration *prometheus.HistogramVec // by route, method, code
}

// NewMetrics creates the HTTP server's metrics and registers them on reg.
// No series is pre-created: one appears with the first request of its
// route, method and code.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mockstagram_http_request_duration_seconds",
			Help:    "Duration of HTTP requests by route pattern, method and status code.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"route", "method", "code"}),
	}
	reg.MustRegister(m.RequestDuration)
	return m
}

// RouteUnmatched is the route label (and span route) of a request no
// route matched: a 404 outside /api/v1, a CORS preflight.
const RouteUnmatched = "unmatched"

// routeOf is the chi route pattern that served r, once the router has run.
func routeOf(r *http.Request) string {
	if rctx := chi.RouteContext(r.Context()); rctx != nil {
		if p := rctx.RoutePattern(); p != "" {
			return p
		}
	}
	return RouteUnmatched
}

// knownMethods are the methods kept as a metric label; any other is OTHER.
var knownMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace}

func methodLabel(m string) string {
	if slices.Contains(knownMethods, m) {
		return m
	}
	return "OTHER"
}

// observe names the request's server span after its route, records its
// duration in Metrics (when set) and logs it at debug level: method, route,
// path, status, bytes written (compressed, as sent), duration; the logger
// adds trace_id and span_id from the request's context (tracing.LogHandler).
// It runs inside the span (otelhttp) and outside everything else, so it
// sees the status a recovered panic was answered with.
func (a *API) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := a.clock.Now()
		ww := chimw.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		elapsed := a.clock.Since(start)
		route := routeOf(r)
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK // nothing written: net/http answers 200
		}
		ctx := r.Context()
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			// otelhttp started the span before routing, named by method only.
			if route != RouteUnmatched {
				span.SetName(r.Method + " " + route)
				span.SetAttributes(semconv.HTTPRoute(route))
			}
		}
		if a.metrics != nil {
			a.metrics.RequestDuration.WithLabelValues(route, methodLabel(r.Method), strconv.Itoa(status)).Observe(elapsed.Seconds())
		}
		if a.logger.Enabled(ctx, slog.LevelDebug) {
			a.logger.LogAttrs(ctx, slog.LevelDebug, "http request",
				slog.String("method", r.Method), slog.String("route", route), slog.String("path", r.URL.Path),
				slog.Int("status", status), slog.Int("bytes", ww.BytesWritten()), slog.Duration("duration", elapsed))
		}
	})
}

// untraced are the paths that get no span: probes and scrapes, every few
// seconds, would drown the API's traces. They are still measured and logged.
var untraced = []string{"/healthz", "/readyz", "/metrics"}

// traced starts a server span per request with tp, continuing a W3C
// traceparent the client sent. No global provider or propagator is used,
// and otelhttp's own metrics are off (Metrics has the server's).
func traced(tp trace.TracerProvider) func(http.Handler) http.Handler {
	return otelhttp.NewMiddleware("http",
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelhttp.WithPropagators(propagation.TraceContext{}),
		otelhttp.WithFilter(func(r *http.Request) bool { return !slices.Contains(untraced, r.URL.Path) }),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }),
	)
}

// CompressMinSize is the smallest response body that is compressed; a
// smaller one costs more to compress than it saves.
const CompressMinSize = 4 << 10

// compressed gzips answers of at least CompressMinSize bytes to clients
// that accept gzip, and adds Vary: Accept-Encoding to every answer.
// klauspost's gzhttp rather than chi's Compress: it buffers up to the
// minimum size before choosing (chi compresses every body, however small),
// compresses faster with pooled writers, and leaves an answer that already
// has a Content-Encoding alone. zstd is off: gzip is what every client and
// proxy speaks.
// Its options are constants that gzhttp accepts; were they refused, the
// API would answer uncompressed and log why once.
func compressed(logger *slog.Logger) func(http.Handler) http.Handler {
	wrap, err := gzhttp.NewWrapper(gzhttp.MinSize(CompressMinSize), gzhttp.EnableZstd(false))
	if err != nil {
		logger.Error("http: gzip disabled", "err", err)
		return func(h http.Handler) http.Handler { return h }
	}
	return func(h http.Handler) http.Handler { return wrap(h) }
}

// corsHandler answers CORS for origins: preflight OPTIONS requests are
// answered 200 (with the Access-Control-Allow-* headers when the origin is
// allowed) before routing; other requests get Access-Control-Allow-Origin
// when their origin is allowed. The admin token travels in Authorization,
// not in cookies, so credentials stay off.
func corsHandler(origins []string) func(http.Handler) http.Handler {
	return cors.Handler(cors.Options{
		AllowedOrigins: origins,
		AllowedMethods: []string{http.MethodGet, http.MethodPost, http.MethodDelete},
		AllowedHeaders: []string{"Authorization", "Content-Type", "If-None-Match"},
		ExposedHeaders: []string{"ETag", "Retry-After"},
		MaxAge:         600,
	})
}

// allowMethods answers 405 with the methods the path is routed for in
// Allow (RFC 9110 §15.5.6). chi lists them only with its own 405 handler.
func allowMethods(root chi.Routes) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.RawPath
		if path == "" {
			path = r.URL.Path
		}
		var allowed []string
		for _, m := range knownMethods {
			if root.Match(chi.NewRouteContext(), m, path) {
				allowed = append(allowed, m)
			}
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
	}
}

// DefaultCacheMargin is a sensible Options.CacheMargin: the samples of the
// minute that just ended (fetched until its deadline, deadline-grace after
// it) are recorded within a few seconds.
const DefaultCacheMargin = 5 * time.Second

// MaxAge is the Cache-Control max-age of a read answered at now: the
// seconds (rounded up, at least 1) until margin past the next minute
// boundary, when the data may next change.
func MaxAge(now time.Time, margin time.Duration) int {
	next := now.Truncate(time.Minute).Add(margin)
	for !next.After(now) {
		next = next.Add(time.Minute)
	}
	return max(1, int(math.Ceil(next.Sub(now).Seconds())))
}

// ETag is the weak entity tag of a read answer's body: a hash of it. Weak
// (W/), because a gzipped and a plain answer share it.
func ETag(body []byte) string {
	sum := sha256.Sum256(body)
	return `W/"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`
}

// etagMatches reports whether an If-None-Match header value lists etag
// (weak comparison, RFC 9110 §13.1.2) or is "*".
func etagMatches(ifNoneMatch, etag string) bool {
	want := strings.TrimPrefix(etag, "W/")
	for tag := range strings.SplitSeq(ifNoneMatch, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" || strings.TrimPrefix(tag, "W/") == want {
			return true
		}
	}
	return false
}

// cached makes a read conditional and cacheable: a 200 answer is buffered,
// given Cache-Control (public, max-age=MaxAge) and an ETag of its body
// (unless the handler set one: stats tags its figures, not its age), and
// answered 304 without a body when the request's If-None-Match lists that
// tag. Other answers pass as they are, uncached.
// A handler that wrote nothing (its request ended first: chi's Timeout
// answers) writes nothing here either.
func (a *API) cached(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := a.buffers.Get().(*bytes.Buffer)
		defer a.putBuffer(buf)
		bw := &bufferedWriter{ResponseWriter: w, buf: buf}
		next.ServeHTTP(bw, r)
		if bw.status == 0 {
			return
		}
		h := w.Header()
		if bw.status != http.StatusOK {
			w.WriteHeader(bw.status)
			_, _ = w.Write(buf.Bytes())
			return
		}
		etag := h.Get("ETag") // the handler's own, of what its answer means
		if etag == "" {
			etag = ETag(buf.Bytes())
			h.Set("ETag", etag)
		}
		h.Set("Cache-Control", "public, max-age="+strconv.Itoa(MaxAge(a.clock.Now(), a.cacheMargin)))
		if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, etag) {
			h.Del("Content-Type")
			h.Del("Content-Length")
			h.Del("X-Content-Type-Options")
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(buf.Bytes())
	})
}

// bufferedWriter holds a handler's status and body; headers go to the
// underlying writer's map, which is sent only when cached writes.
type bufferedWriter struct {
	http.ResponseWriter
	status int
	buf    *bytes.Buffer
}

func (b *bufferedWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.buf.Write(p)
}

// putBuffer returns buf to the pool unless it grew past maxPooledBuffer.
func (a *API) putBuffer(buf *bytes.Buffer) {
	if buf.Cap() > maxPooledBuffer {
		return
	}
	buf.Reset()
	a.buffers.Put(buf)
}

// maxPooledBuffer bounds the buffers cached keeps for reuse: a week's
// timeline at 1m is about 1.5 MB.
const maxPooledBuffer = 4 << 20
