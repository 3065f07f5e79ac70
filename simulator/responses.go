package simulator

import (
	"io"
	"net/http"
	"strconv"
)

// Bodies of the injected server errors: what an Express error page, a proxy
// and a load balancer answer, never the JSON contract.
const (
	body500 = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Error</title>\n</head>\n<body>\n<pre>Internal Server Error</pre>\n</body>\n</html>\n"
	body502 = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
	body503 = "upstream connect error or disconnect/reset before headers. reset reason: overflow"
	body429 = "Too Many Requests"
	body404 = "404 page not found\n"
)

// writeSample writes the 200 answer by hand into a pooled buffer.
func (s *Server) writeSample(w http.ResponseWriter, pk, follower, following int64) {
	bp := s.bufs.Get().(*[]byte)
	b := appendSample((*bp)[:0], pk, follower, following)
	b = append(b, '}')
	h := w.Header()
	h["Content-Type"] = s.ctJSON
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	*bp = b
	s.bufs.Put(bp)
}

// appendSample appends the sample object without its closing brace.
func appendSample(b []byte, pk, follower, following int64) []byte {
	b = append(b, `{"pk":`...)
	b = strconv.AppendInt(b, pk, 10)
	b = append(b, `,"username":"influencer-`...)
	b = strconv.AppendInt(b, pk, 10)
	b = append(b, `","followerCount":`...)
	b = strconv.AppendInt(b, follower, 10)
	b = append(b, `,"followingCount":`...)
	b = strconv.AppendInt(b, following, 10)
	return b
}

// writeNotFound writes the real server's unknown-pk answer.
func (s *Server) writeNotFound(w http.ResponseWriter) {
	w.Header()["Content-Type"] = s.ctJSON
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = io.WriteString(w, NotFoundBody)
}

// writeRouteNotFound answers a path or method the API does not have.
func (s *Server) writeRouteNotFound(w http.ResponseWriter) {
	h := w.Header()
	h["Content-Type"] = s.ctText
	h["X-Content-Type-Options"] = s.nosniff
	w.WriteHeader(http.StatusNotFound)
	_, _ = io.WriteString(w, body404)
}

// writeServerError answers 500, 502 or 503 with a non-JSON body.
func (s *Server) writeServerError(w http.ResponseWriter, rnd *rng) {
	h := w.Header()
	switch rnd.next() % 3 {
	case 0:
		h["Content-Type"] = s.ctHTML
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, body500)
	case 1:
		h["Content-Type"] = s.ctHTML
		w.WriteHeader(http.StatusBadGateway)
		_, _ = io.WriteString(w, body502)
	default:
		h["Content-Type"] = s.ctText
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, body503)
	}
}

func (s *Server) writeRateLimited(w http.ResponseWriter, retryAfter []string) {
	h := w.Header()
	h["Content-Type"] = s.ctText
	h["Retry-After"] = retryAfter
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = io.WriteString(w, body429)
}

// malformedVariants is the number of garbage bodies writeMalformed rotates
// through; each is rejected by json.Unmarshal into an influencer.Sample.
const malformedVariants = 8

// writeMalformed answers 200 application/json with a body that is not a valid
// sample document: truncated, wrong types, not JSON, out-of-range numbers.
func (s *Server) writeMalformed(w http.ResponseWriter, pk, follower, following int64, rnd *rng) {
	bp := s.bufs.Get().(*[]byte)
	b := (*bp)[:0]
	switch rnd.next() % malformedVariants {
	case 0: // truncated mid-document
		b = appendSample(b, pk, follower, following)
		b = b[:len(b)/2]
	case 1: // numbers as strings
		b = append(b, `{"pk":"`...)
		b = strconv.AppendInt(b, pk, 10)
		b = append(b, `","username":"`...)
		b = append(b, Username(pk)...)
		b = append(b, `","followerCount":"many","followingCount":null}`...)
	case 2: // an HTML page with a 200
		b = append(b, "<html><body><h1>Welcome to Mockstagram</h1></body></html>"...)
	case 3: // NaN is not JSON
		b = append(b, `{"pk":`...)
		b = strconv.AppendInt(b, pk, 10)
		b = append(b, `,"username":"`...)
		b = append(b, Username(pk)...)
		b = append(b, `","followerCount":NaN,"followingCount":Infinity}`...)
	case 4: // an array instead of an object
		b = append(b, `[`...)
		b = strconv.AppendInt(b, pk, 10)
		b = append(b, `,`...)
		b = strconv.AppendInt(b, follower, 10)
		b = append(b, `]`...)
	case 5: // a number that overflows int64
		b = append(b, `{"pk":`...)
		b = strconv.AppendInt(b, pk, 10)
		b = append(b, `,"username":"`...)
		b = append(b, Username(pk)...)
		b = append(b, `","followerCount":1e999,"followingCount":1}`...)
	case 6: // empty body
	default: // trailing garbage after a valid document
		b = appendSample(b, pk, follower, following)
		b = append(b, `}}garbage`...)
	}
	w.Header()["Content-Type"] = s.ctJSON
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	*bp = b
	s.bufs.Put(bp)
}

// writeOversize answers 200 with a syntactically valid sample padded to more
// than OversizeBytes, to exercise the client's body limit.
func (s *Server) writeOversize(w http.ResponseWriter, pk, follower, following int64) {
	bp := s.bufs.Get().(*[]byte)
	b := appendSample((*bp)[:0], pk, follower, following)
	b = append(b, `,"padding":"`...)
	const tail = `"}`
	h := w.Header()
	h["Content-Type"] = s.ctJSON
	h["Content-Length"] = []string{strconv.Itoa(len(b) + len(s.padding) + len(tail))}
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(b); err == nil {
		if _, err := w.Write(s.padding); err == nil {
			_, _ = io.WriteString(w, tail)
		}
	}
	*bp = b
	s.bufs.Put(bp)
}
