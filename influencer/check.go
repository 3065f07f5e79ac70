package influencer

import (
	"fmt"
	"time"
)

// ClassInvalid is the failure class of a row CheckBatch rejects (and of a
// value the API answered that fails Sample.ValidateValues).
const ClassInvalid = "invalid"

// MinuteRule says which minutes the rows of a batch may be for.
type MinuteRule int

const (
	// SameMinute: every row is for the batch's minute, as in a fetcher
	// result (the recorder's rule).
	SameMinute MinuteRule = iota
	// AnyMinute: each row may be for any minute (what a store accepts:
	// it keys rows by (pk, minute)).
	AnyMinute
)

// CheckBatch is the one validator of a batch's rows. The recorder stores
// valid and records each rejected row as missed; a store refuses a batch
// with any rejected row (see store.ValidateBatch). The rules:
//
//   - a sample must be for the batch's minute (under SameMinute), have a pk
//     not already seen among the batch's accepted samples (the first one is
//     kept), and pass Validate;
//   - a failure must have a positive pk and a minute-aligned minute, the
//     batch's under SameMinute; a failure for the (pk, minute) of an
//     accepted sample is dropped from valid, not rejected (nothing was
//     missed).
//
// Each rejected row is returned as a failure of class ClassInvalid with
// the reason, for the batch's minute, in the order of the rows (samples
// first). A rejected row with a non-positive pk cannot be recorded against
// anything: callers count it only. valid keeps the order of the accepted
// rows; when nothing is rejected or dropped its slices are b's, not copies.
func CheckBatch(b Batch, rule MinuteRule) (valid Batch, rejected []Failure) {
	reject := func(pk int64, reason string) {
		rejected = append(rejected, Failure{PK: pk, Minute: b.Minute, Class: ClassInvalid, Reason: reason})
	}
	// Rows are copied into valid only from the first one left out on, so an
	// all-valid batch costs no allocation beyond the pk set.
	accepted := make(map[int64]time.Time, len(b.Samples)) // pk -> minute
	samples := b.Samples
	copied := false
	for i, s := range b.Samples {
		reason := sampleProblem(s, b.Minute, rule, accepted)
		if reason == "" {
			accepted[s.PK] = s.Minute
			if copied {
				samples = append(samples, s)
			}
			continue
		}
		reject(s.PK, reason)
		if !copied {
			samples, copied = append(make([]Sample, 0, len(b.Samples)-1), b.Samples[:i]...), true
		}
	}
	failures := b.Failures
	copied = false
	for i, f := range b.Failures {
		reason := failureProblem(f, b.Minute, rule)
		m, sampled := accepted[f.PK]
		shadowed := sampled && m.Equal(f.Minute)
		if reason == "" && !shadowed {
			if copied {
				failures = append(failures, f)
			}
			continue
		}
		if reason != "" {
			reject(f.PK, reason)
		}
		if !copied {
			failures, copied = append(make([]Failure, 0, len(b.Failures)-1), b.Failures[:i]...), true
		}
	}
	return Batch{Minute: b.Minute, Shard: b.Shard, Samples: samples, Failures: failures}, rejected
}

// sampleProblem is why s cannot be stored in a batch for minute whose
// accepted samples are accepted, or "".
func sampleProblem(s Sample, minute time.Time, rule MinuteRule, accepted map[int64]time.Time) string {
	if rule == SameMinute && !s.Minute.Equal(minute) {
		return fmt.Sprintf("sample minute %s differs from batch minute", s.Minute.Format(time.RFC3339))
	}
	if _, dup := accepted[s.PK]; dup {
		return "duplicate pk in batch"
	}
	if err := s.Validate(); err != nil {
		return err.Error()
	}
	return ""
}

// failureProblem is why f cannot be recorded as missed in a batch for
// minute, or "".
func failureProblem(f Failure, minute time.Time, rule MinuteRule) string {
	if f.PK <= 0 {
		return fmt.Sprintf("pk %d is not positive", f.PK)
	}
	if rule == SameMinute && !f.Minute.Equal(minute) {
		return fmt.Sprintf("failure minute %s differs from batch minute", f.Minute.Format(time.RFC3339Nano))
	}
	if err := ValidateMinute(f.Minute); err != nil {
		return err.Error()
	}
	return ""
}
