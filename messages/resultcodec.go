package messages

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/mockstagram/pipeline/influencer"
)

// The result payload is the largest on the wire (a sample per pk of a
// shard), so it has a codec of its own: appendResult writes the same bytes
// as encoding/json writes for Result, without reflection; scanResult reads
// the payload as appendResult writes it and leaves anything else (another
// key order, whitespace, escapes, non-UTC times) to encoding/json, so what
// decodes, and how strictly, does not change.

// errTimeRange is encoding/json's refusal of a time it cannot write.
var errTimeRange = errors.New("Time.MarshalJSON: year outside of range [0,9999]")

// resultEncoder appends JSON, remembering the last time it formatted per
// field (a batch's minutes are one value; fetch times are often equal).
type resultEncoder struct {
	b   []byte
	err error

	minute, fetched       time.Time
	minuteText, fetchText []byte
}

// appendResult appends b's payload as encoding/json would write Result.
func appendResult(dst []byte, b influencer.Batch) ([]byte, error) {
	e := resultEncoder{b: dst}
	e.b = append(e.b, `{"minute":`...)
	e.appendTime(b.Minute, &e.minute, &e.minuteText)
	e.b = append(e.b, `,"shard":`...)
	e.b = strconv.AppendInt(e.b, int64(b.Shard), 10)
	e.b = append(e.b, `,"samples":`...)
	if b.Samples == nil {
		e.b = append(e.b, "null"...)
	} else {
		e.b = append(e.b, '[')
		for i := range b.Samples {
			s := &b.Samples[i]
			if i > 0 {
				e.b = append(e.b, ',')
			}
			e.b = append(e.b, `{"pk":`...)
			e.b = strconv.AppendInt(e.b, s.PK, 10)
			e.b = append(e.b, `,"username":`...)
			e.appendString(s.Username)
			e.b = append(e.b, `,"followerCount":`...)
			e.b = strconv.AppendInt(e.b, s.FollowerCount, 10)
			e.b = append(e.b, `,"followingCount":`...)
			e.b = strconv.AppendInt(e.b, s.FollowingCount, 10)
			e.b = append(e.b, `,"minute":`...)
			e.appendTime(s.Minute, &e.minute, &e.minuteText)
			e.b = append(e.b, `,"fetchedAt":`...)
			e.appendTime(s.FetchedAt, &e.fetched, &e.fetchText)
			e.b = append(e.b, '}')
		}
		e.b = append(e.b, ']')
	}
	if len(b.Failures) > 0 { // omitempty
		e.b = append(e.b, `,"failures":[`...)
		for i := range b.Failures {
			f := &b.Failures[i]
			if i > 0 {
				e.b = append(e.b, ',')
			}
			e.b = append(e.b, `{"pk":`...)
			e.b = strconv.AppendInt(e.b, f.PK, 10)
			e.b = append(e.b, `,"minute":`...)
			e.appendTime(f.Minute, &e.minute, &e.minuteText)
			e.b = append(e.b, `,"class":`...)
			e.appendString(f.Class)
			e.b = append(e.b, `,"reason":`...)
			e.appendString(f.Reason)
			if f.Attempts != 0 { // omitempty
				e.b = append(e.b, `,"attempts":`...)
				e.b = strconv.AppendInt(e.b, int64(f.Attempts), 10)
			}
			e.b = append(e.b, '}')
		}
		e.b = append(e.b, ']')
	}
	e.b = append(e.b, '}')
	return e.b, e.err
}

// appendTime appends t as time.Time.MarshalJSON does, reusing the text of
// the previous time of the same field when t is the same value.
func (e *resultEncoder) appendTime(t time.Time, last *time.Time, text *[]byte) {
	if *text == nil || t != *last {
		if y := t.Year(); y < 0 || y > 9999 {
			if e.err == nil {
				e.err = errTimeRange
			}
			return
		}
		*text = append(t.AppendFormat(append((*text)[:0], '"'), time.RFC3339Nano), '"')
		*last = t
	}
	e.b = append(e.b, *text...)
}

// appendString appends s as encoding/json does: as is when it needs no
// escaping (printable ASCII other than the quote, backslash and the HTML
// characters encoding/json escapes), else by encoding/json itself.
func (e *resultEncoder) appendString(s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, err := json.Marshal(s)
			if err != nil && e.err == nil {
				e.err = err
			}
			e.b = append(e.b, q...)
			return
		}
	}
	e.b = append(e.b, '"')
	e.b = append(e.b, s...)
	e.b = append(e.b, '"')
}

// resultScanner reads a payload in appendResult's form.
type resultScanner struct {
	b []byte
	i int

	lastText []byte // the last time text parsed, and its value
	lastTime time.Time
}

// scanResult decodes p if it is in appendResult's form (ok), else ok is
// false and nothing is decided: the caller decodes it with encoding/json.
func scanResult(p []byte) (b influencer.Batch, ok bool) {
	s := resultScanner{b: p}
	if !s.lit(`{"minute":`) {
		return b, false
	}
	if b.Minute, ok = s.time(); !ok || !s.lit(`,"shard":`) {
		return b, false
	}
	shard, ok := s.int()
	if !ok || shard > math.MaxInt32 || shard < math.MinInt32 || !s.lit(`,"samples":`) {
		return b, false
	}
	b.Shard = int(shard)
	if !s.lit("null") {
		if !s.lit("[") {
			return b, false
		}
		b.Samples = make([]influencer.Sample, 0, s.countObjects())
		for first := true; !s.lit("]"); first = false {
			if !first && !s.lit(",") {
				return b, false
			}
			var x influencer.Sample
			if !s.lit(`{"pk":`) {
				return b, false
			}
			if x.PK, ok = s.int(); !ok || !s.lit(`,"username":`) {
				return b, false
			}
			if x.Username, ok = s.str(); !ok || !s.lit(`,"followerCount":`) {
				return b, false
			}
			if x.FollowerCount, ok = s.int(); !ok || !s.lit(`,"followingCount":`) {
				return b, false
			}
			if x.FollowingCount, ok = s.int(); !ok || !s.lit(`,"minute":`) {
				return b, false
			}
			if x.Minute, ok = s.time(); !ok || !s.lit(`,"fetchedAt":`) {
				return b, false
			}
			if x.FetchedAt, ok = s.time(); !ok || !s.lit("}") {
				return b, false
			}
			b.Samples = append(b.Samples, x)
		}
	}
	if s.lit(`,"failures":[`) {
		b.Failures = make([]influencer.Failure, 0, s.countObjects())
		for first := true; !s.lit("]"); first = false {
			if !first && !s.lit(",") {
				return b, false
			}
			var f influencer.Failure
			if !s.lit(`{"pk":`) {
				return b, false
			}
			if f.PK, ok = s.int(); !ok || !s.lit(`,"minute":`) {
				return b, false
			}
			if f.Minute, ok = s.time(); !ok || !s.lit(`,"class":`) {
				return b, false
			}
			if f.Class, ok = s.str(); !ok || !s.lit(`,"reason":`) {
				return b, false
			}
			if f.Reason, ok = s.str(); !ok {
				return b, false
			}
			if s.lit(`,"attempts":`) {
				n, ok := s.int()
				if !ok || n > math.MaxInt32 || n < math.MinInt32 {
					return b, false
				}
				f.Attempts = int(n)
			}
			if !s.lit("}") {
				return b, false
			}
			b.Failures = append(b.Failures, f)
		}
	}
	if !s.lit("}") || s.i != len(s.b) {
		return b, false
	}
	return b, true
}

// lit consumes the literal l if it comes next.
func (s *resultScanner) lit(l string) bool {
	if len(s.b)-s.i < len(l) || string(s.b[s.i:s.i+len(l)]) != l {
		return false
	}
	s.i += len(l)
	return true
}

// countObjects estimates the objects of the array that follows (a
// capacity: the count of '{' up to the array's end, or less).
func (s *resultScanner) countObjects() int {
	n := 0
	for j := s.i; j < len(s.b); j++ {
		switch s.b[j] {
		case '{':
			n++
		case ']':
			return n
		case '"': // skip strings: they may hold braces
			for j++; j < len(s.b) && s.b[j] != '"'; j++ {
			}
		}
	}
	return n
}

// int reads an integer as encoding/json writes it (no leading zeros,
// fraction or exponent) that fits an int64.
func (s *resultScanner) int() (int64, bool) {
	b, i := s.b, s.i
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	start := i
	var u uint64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		if i-start >= 19 {
			return 0, false
		}
		u = u*10 + uint64(b[i]-'0')
		i++
	}
	switch {
	case i == start, b[start] == '0' && i-start > 1:
		return 0, false
	case i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E'):
		return 0, false
	case !neg && u > math.MaxInt64, neg && u > math.MaxInt64+1:
		return 0, false
	}
	s.i = i
	if neg {
		return int64(-u), true //nolint:gosec // in range: checked above
	}
	return int64(u), true
}

// str reads a string without escapes or control characters, valid UTF-8
// (encoding/json would decode it to the same bytes).
func (s *resultScanner) str() (string, bool) {
	b := s.b
	if s.i >= len(b) || b[s.i] != '"' {
		return "", false
	}
	start := s.i + 1
	ascii := true
	for j := start; j < len(b); j++ {
		c := b[j]
		switch {
		case c == '"':
			v := b[start:j]
			if !ascii && !utf8.Valid(v) {
				return "", false
			}
			s.i = j + 1
			return internClass(v), true
		case c == '\\' || c < 0x20:
			return "", false
		case c >= 0x80:
			ascii = false
		}
	}
	return "", false
}

// internClass returns the usual failure classes without allocating.
func internClass(v []byte) string {
	switch string(v) {
	case "expired":
		return "expired"
	case "timeout":
		return "timeout"
	case "connection":
		return "connection"
	case "http_5xx":
		return "http_5xx"
	case "rate_limited":
		return "rate_limited"
	case "circuit_open":
		return "circuit_open"
	case "not_found":
		return "not_found"
	}
	return string(v)
}

// time reads a quoted UTC time "YYYY-MM-DDTHH:MM:SS[.fraction]Z", as
// encoding/json writes a UTC time.Time (and decodes it: time.Parse with
// RFC 3339 gives the same UTC value). Other forms (offsets) are not read.
func (s *resultScanner) time() (time.Time, bool) {
	b := s.b
	if s.i >= len(b) || b[s.i] != '"' {
		return time.Time{}, false
	}
	end := s.i + 1
	for end < len(b) && b[end] != '"' {
		end++
	}
	if end >= len(b) {
		return time.Time{}, false
	}
	v := b[s.i+1 : end]
	if s.lastText != nil && string(v) == string(s.lastText) {
		s.i = end + 1
		return s.lastTime, true
	}
	t, ok := parseUTC(v)
	if !ok {
		return time.Time{}, false
	}
	s.lastText, s.lastTime = v, t
	s.i = end + 1
	return t, true
}

// parseUTC parses "YYYY-MM-DDTHH:MM:SS[.d{1,9}]Z" with fields in range.
func parseUTC(v []byte) (time.Time, bool) {
	if len(v) < 20 || v[4] != '-' || v[7] != '-' || v[10] != 'T' || v[13] != ':' || v[16] != ':' || v[len(v)-1] != 'Z' {
		return time.Time{}, false
	}
	num := func(p []byte) (int, bool) {
		n := 0
		for _, c := range p {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(v[0:4])
	month, ok2 := num(v[5:7])
	day, ok3 := num(v[8:10])
	hour, ok4 := num(v[11:13])
	minute, ok5 := num(v[14:16])
	sec, ok6 := num(v[17:19])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 ||
		month < 1 || month > 12 || day < 1 || day > daysIn(time.Month(month), year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if frac := v[19 : len(v)-1]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return time.Time{}, false
		}
		n, ok := num(frac[1:])
		if !ok {
			return time.Time{}, false
		}
		for range 10 - len(frac) {
			n *= 10
		}
		nsec = n
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

func daysIn(m time.Month, year int) int {
	if m == time.February && year%4 == 0 && (year%100 != 0 || year%400 == 0) {
		return 29
	}
	return int(monthDays[m])
}

var monthDays = [13]uint8{0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
