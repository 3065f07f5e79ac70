package messages

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/mockstagram/pipeline/influencer"
)

// Result is the payload of a fetcher_results message: what the fetcher
// learnt about one shard in one minute (influencer.Batch on the wire).
type Result struct {
	Minute   time.Time `json:"minute"`
	Shard    int       `json:"shard"`
	Samples  []Sample  `json:"samples"`
	Failures []Failure `json:"failures,omitempty"`
}

// Sample is influencer.Sample on the wire.
type Sample struct {
	PK             int64     `json:"pk"`
	Username       string    `json:"username"`
	FollowerCount  int64     `json:"followerCount"`
	FollowingCount int64     `json:"followingCount"`
	Minute         time.Time `json:"minute"`
	FetchedAt      time.Time `json:"fetchedAt"`
}

// Failure is influencer.Failure on the wire (in a result and in a pk's
// dead letter).
type Failure struct {
	PK       int64     `json:"pk"`
	Minute   time.Time `json:"minute"`
	Class    string    `json:"class"`
	Reason   string    `json:"reason"`
	Attempts int       `json:"attempts,omitempty"`
}

// The wire types mirror the domain's fields one for one (a conversion
// compiles only while they do), so a field added to the domain cannot be
// silently left off the wire.

// ResultOf is the payload of batch b. A nil slice stays nil (samples
// encode as null, as they always have).
func ResultOf(b influencer.Batch) Result {
	r := Result{Minute: b.Minute, Shard: b.Shard}
	if b.Samples != nil {
		r.Samples = make([]Sample, len(b.Samples))
		for i, s := range b.Samples {
			r.Samples[i] = Sample(s)
		}
	}
	if b.Failures != nil {
		r.Failures = make([]Failure, len(b.Failures))
		for i, f := range b.Failures {
			r.Failures[i] = Failure(f)
		}
	}
	return r
}

// Batch is the domain batch of the payload.
func (r Result) Batch() influencer.Batch {
	b := influencer.Batch{Minute: r.Minute, Shard: r.Shard}
	if r.Samples != nil {
		b.Samples = make([]influencer.Sample, len(r.Samples))
		for i, s := range r.Samples {
			b.Samples[i] = influencer.Sample(s)
		}
	}
	if r.Failures != nil {
		b.Failures = make([]influencer.Failure, len(r.Failures))
		for i, f := range r.Failures {
			b.Failures[i] = influencer.Failure(f)
		}
	}
	return b
}

// NewResult builds the message for a fetched batch. The payload is
// Result's JSON, byte for byte, written without reflection (appendResult).
func NewResult(b influencer.Batch) (*message.Message, error) {
	payload, err := appendResult(make([]byte, 0, resultSizeHint(b)), b)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", Result{}, err)
	}
	return newMessage(payload, b.Shard, b.Minute), nil
}

// resultSizeHint is about the payload's size: ~170 bytes a sample.
func resultSizeHint(b influencer.Batch) int {
	return 64 + 192*len(b.Samples) + 200*len(b.Failures)
}

// DecodeResult decodes a result payload. Samples are validated one by one by
// the recorder; here only the envelope is checked. A payload as NewResult
// writes it is read without reflection; any other (older writers, other
// spacing or key order) goes through strict encoding/json, unknown fields
// and trailing data refused as before.
func DecodeResult(payload []byte) (influencer.Batch, error) {
	if len(payload) > MaxPayload {
		return influencer.Batch{}, fmt.Errorf("%w: payload of %d bytes exceeds %d", ErrMalformed, len(payload), MaxPayload)
	}
	b, ok := scanResult(payload)
	if !ok {
		var r Result
		if err := decodeStrict(payload, &r); err != nil {
			return influencer.Batch{}, err
		}
		b = r.Batch()
	}
	if !influencer.IsMinute(b.Minute) {
		return influencer.Batch{}, fmt.Errorf("%w: result minute missing or not minute-aligned", ErrMalformed)
	}
	if b.Shard < 0 {
		return influencer.Batch{}, fmt.Errorf("%w: result shard %d negative", ErrMalformed, b.Shard)
	}
	return b, nil
}

// FetchDeadLetter is one pk that could not be fetched (or checked) for a
// minute. On the wire it is the failure's fields and the shard.
type FetchDeadLetter struct {
	influencer.Failure
	Shard int
}

// fetchDeadLetterJSON is a FetchDeadLetter on the wire.
type fetchDeadLetterJSON struct {
	Failure
	Shard int `json:"shard"`
}

// MarshalJSON encodes the wire form.
func (d FetchDeadLetter) MarshalJSON() ([]byte, error) {
	return json.Marshal(fetchDeadLetterJSON{Failure: Failure(d.Failure), Shard: d.Shard})
}

// UnmarshalJSON decodes the wire form.
func (d *FetchDeadLetter) UnmarshalJSON(data []byte) error {
	var w fetchDeadLetterJSON
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	*d = FetchDeadLetter{Failure: influencer.Failure(w.Failure), Shard: w.Shard}
	return nil
}
