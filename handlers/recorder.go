package handlers

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/metrics"
)

// BatchStore stores one result batch idempotently in one transaction.
type BatchStore interface {
	Record(ctx context.Context, b influencer.Batch) (influencer.RecordResult, error)
}

// Recorder writes each result message as one batch. Invalid samples are
// rejected one by one (recorded as missed with their reason) and the rest is
// stored; the message is acked only after the transaction commits (the
// router acks when Handle returns nil).
type Recorder struct {
	store   BatchStore
	logger  *slog.Logger
	metrics *metrics.Pipeline
}

// NewRecorder creates a recorder.
func NewRecorder(store BatchStore, logger *slog.Logger, m *metrics.Pipeline) *Recorder {
	return &Recorder{store: store, logger: logger, metrics: m}
}

// Handle is the Watermill handler for fetcher_results.
func (r *Recorder) Handle(msg *message.Message) error {
	batch, err := messages.DecodeResult(msg.Payload)
	if err != nil {
		return err
	}
	clean, rejected := Clean(batch)
	if rejected > 0 {
		r.metrics.SamplesRejected.Add(float64(rejected))
		r.logger.Warn("rejected invalid entries", "minute", batch.Minute, "shard", batch.Shard, "rejected", rejected)
	}
	start := time.Now()
	res, err := r.store.Record(msg.Context(), clean)
	if err != nil {
		return fmt.Errorf("record shard %d minute %s: %w", batch.Shard, batch.Minute.Format(time.RFC3339), err)
	}
	r.metrics.WriteDuration.Observe(time.Since(start).Seconds())
	r.metrics.BatchSize.Observe(float64(len(clean.Samples)))
	r.metrics.SamplesStored.Add(float64(res.Inserted))
	r.metrics.SamplesDuplicate.Add(float64(res.Duplicates))
	r.metrics.SamplesMissed.Add(float64(res.Missed))
	if res.Inserted > 0 {
		r.metrics.NewestMinute.Set(float64(batch.Minute.Unix()))
	}
	return nil
}

// Clean validates a batch: samples that are invalid, for another minute or
// for a pk already in the batch become failures with class "invalid" and the
// reason (stored as missed); entries without a usable pk cannot be stored at
// all. rejected counts both, for the caller's metrics and log.
func Clean(b influencer.Batch) (_ influencer.Batch, rejected int) {
	out := influencer.Batch{Minute: b.Minute, Shard: b.Shard, Samples: make([]influencer.Sample, 0, len(b.Samples))}
	seen := make(map[int64]bool, len(b.Samples))
	reject := func(pk int64, reason string) {
		rejected++
		if pk <= 0 {
			return // no pk to record it against: only counted and logged
		}
		out.Failures = append(out.Failures, influencer.Failure{PK: pk, Minute: b.Minute, Class: ClassInvalid, Reason: reason})
	}
	for _, s := range b.Samples {
		switch {
		case !s.Minute.Equal(b.Minute):
			reject(s.PK, fmt.Sprintf("sample minute %s differs from batch minute", s.Minute.Format(time.RFC3339)))
		case seen[s.PK]:
			reject(s.PK, "duplicate pk in batch")
		default:
			if err := s.Validate(); err != nil {
				reject(s.PK, truncate(err.Error(), 300))
				continue
			}
			seen[s.PK] = true
			out.Samples = append(out.Samples, s)
		}
	}
	for _, f := range b.Failures {
		if seen[f.PK] {
			continue // a sample for the pk exists: nothing was missed
		}
		if f.PK <= 0 {
			rejected++
			continue
		}
		f.Minute = b.Minute
		f.Reason = truncate(f.Reason, 500)
		f.Class = truncate(f.Class, 40)
		out.Failures = append(out.Failures, f)
	}
	return out, rejected
}
