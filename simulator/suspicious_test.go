package simulator

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const suspiciousURL = pathPrefix + suspiciousPath

func suspiciousBody(pk int64) string {
	return fmt.Sprintf(`{"pk":%d,"username":"influencer-%d","followerCount":57166,"followingCount":1328}`, pk, pk)
}

func TestSuspiciousAnswersAfterTheDelay(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		min, max time.Duration
	}{
		{"fixed", 3 * time.Second, 3 * time.Second},
		{"default 1s..10s", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, clock := newServer(t, Config{SuspiciousDelayMin: tc.min, SuspiciousDelayMax: tc.max})
			lo, hi := s.cfg.SuspiciousDelayMin, s.cfg.SuspiciousDelayMax

			done := make(chan *httptest.ResponseRecorder)
			go func() { done <- serve(s, http.MethodPost, suspiciousURL, suspiciousBody(knownPK)) }()
			if err := clock.BlockUntilContext(t.Context(), 1); err != nil {
				t.Fatal(err)
			}
			clock.Advance(lo - time.Nanosecond)
			pending, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if err := clock.BlockUntilContext(pending, 1); err != nil {
				t.Fatalf("answered before the minimum delay: %v", err)
			}
			clock.Advance(hi - lo + time.Nanosecond)
			rec := <-done
			if rec.Code != http.StatusOK {
				t.Fatalf("status = %d, body %q", rec.Code, rec.Body)
			}
			want := fmt.Sprintf(`{"pk":%d,"suspicious":%t}`, knownPK, Suspicious(knownPK))
			if got := rec.Body.String(); got != want {
				t.Errorf("body = %s, want %s", got, want)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
		})
	}
}

func TestSuspiciousGivesUpWithTheClient(t *testing.T) {
	t.Parallel()
	s, clock := newServer(t, Config{})
	ctx, cancel := context.WithCancel(t.Context())
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, suspiciousURL, strings.NewReader(suspiciousBody(knownPK)))
		s.ServeHTTP(rec, req)
	}()
	if err := clock.BlockUntilContext(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	if rec.Body.Len() != 0 {
		t.Errorf("answered %q after the client gave up", rec.Body)
	}
}

func TestSuspiciousBadBody(t *testing.T) {
	t.Parallel()
	s, _ := newServer(t, Config{SuspiciousDelayMax: time.Nanosecond})
	for _, tc := range []struct{ name, body, want string }{
		{"empty", ``, "decode body"},
		{"not JSON", `pk=1`, "decode body"},
		{"wrong type", `{"pk":"1","username":"u","followerCount":1,"followingCount":1}`, "decode body"},
		{"missing fields", `{}`, "pk is missing"},
		{"zero pk", `{"pk":0,"username":"u","followerCount":1,"followingCount":1}`, "pk 0 is not positive"},
		{"negative count", `{"pk":1,"username":"u","followerCount":-1,"followingCount":1}`, "followerCount -1 out of range"},
		{"control characters", `{"pk":1,"username":"a\u0000b","followerCount":1,"followingCount":1}`, "control characters"},
		{"too large", `{"pk":1,"username":"` + strings.Repeat("a", maxSuspiciousBody) + `"}`, "decode body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := serve(s, http.MethodPost, suspiciousURL, tc.body)
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("status = %d, want 400", rec.Code)
			}
			var e errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Fatalf("400 body %q is not the JSON error: %v", rec.Body, err)
			}
			if e.Error.Name != "ValidationError" || !strings.Contains(e.Error.Message, tc.want) {
				t.Errorf("error = %+v, want ValidationError mentioning %q", e.Error, tc.want)
			}
		})
	}
}

// SuspiciousNoDelay answers at once without waiting on the clock.
func TestSuspiciousNoDelay(t *testing.T) {
	t.Parallel()
	s, _ := newServer(t, Config{SuspiciousNoDelay: true})
	rec := serve(s, http.MethodPost, suspiciousURL, suspiciousBody(knownPK))
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, body %q", rec.Code, rec.Body)
	}
	if want := fmt.Sprintf(`{"pk":%d,"suspicious":%t}`, knownPK, Suspicious(knownPK)); rec.Body.String() != want {
		t.Errorf("body = %s, want %s", rec.Body, want)
	}
}
