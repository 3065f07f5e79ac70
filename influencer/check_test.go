package influencer_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/mockstagram/pipeline/influencer"
)

func TestCheckBatch(t *testing.T) {
	t.Parallel()
	s := func(pk int64, f ...func(*influencer.Sample)) influencer.Sample {
		x := validSample()
		x.PK = pk
		for _, g := range f {
			g(&x)
		}
		return x
	}
	fail := func(pk int64, m time.Time) influencer.Failure {
		return influencer.Failure{PK: pk, Minute: m, Class: "timeout", Reason: "deadline exceeded"}
	}
	invalid := func(pk int64, reason string) influencer.Failure {
		return influencer.Failure{PK: pk, Minute: minute, Class: influencer.ClassInvalid, Reason: reason}
	}
	batch := func(samples []influencer.Sample, failures ...influencer.Failure) influencer.Batch {
		return influencer.Batch{Minute: minute, Shard: 3, Samples: samples, Failures: failures}
	}
	for _, tc := range []struct {
		name         string
		in           influencer.Batch
		wantValid    influencer.Batch
		wantRejected []influencer.Failure
	}{
		{"empty", batch(nil), batch(nil), nil},
		{"all valid", batch([]influencer.Sample{s(1), s(2)}, fail(3, minute)),
			batch([]influencer.Sample{s(1), s(2)}, fail(3, minute)), nil},
		{"invalid values", batch([]influencer.Sample{s(1), s(2, func(x *influencer.Sample) { x.FollowerCount = -1 }), s(3)}),
			batch([]influencer.Sample{s(1), s(3)}),
			[]influencer.Failure{invalid(2, "followerCount -1 out of range [0, 10000000000]")}},
		{"sample for another minute", batch([]influencer.Sample{s(1, func(x *influencer.Sample) { x.Minute = minute.Add(time.Minute) })}),
			batch([]influencer.Sample{}),
			[]influencer.Failure{invalid(1, "sample minute 2026-11-25T12:01:00Z differs from batch minute")}},
		{"duplicate pk keeps the first", batch([]influencer.Sample{s(1), s(1, func(x *influencer.Sample) { x.FollowerCount = 7 })}),
			batch([]influencer.Sample{s(1)}),
			[]influencer.Failure{invalid(1, "duplicate pk in batch")}},
		{"an invalid first sample does not hide a later duplicate", batch([]influencer.Sample{
			s(1, func(x *influencer.Sample) { x.Username = "" }), s(1), s(1)}),
			batch([]influencer.Sample{s(1)}),
			[]influencer.Failure{invalid(1, "username is empty"), invalid(1, "duplicate pk in batch")}},
		{"sample without a usable pk", batch([]influencer.Sample{s(0), s(2)}),
			batch([]influencer.Sample{s(2)}),
			[]influencer.Failure{invalid(0, "pk 0 is not positive")}},
		{"failure without a usable pk", batch(nil, fail(-4, minute), fail(5, minute)),
			batch(nil, fail(5, minute)),
			[]influencer.Failure{invalid(-4, "pk -4 is not positive")}},
		{"failure for another minute", batch(nil, fail(5, minute.Add(time.Millisecond))),
			batch(nil, []influencer.Failure{}...),
			[]influencer.Failure{invalid(5, "failure minute 2026-11-25T12:00:00.001Z differs from batch minute")}},
		{"failure shadowed by a sample is dropped", batch([]influencer.Sample{s(1)}, fail(1, minute), fail(2, minute)),
			batch([]influencer.Sample{s(1)}, fail(2, minute)), nil},
		{"failure of a rejected sample is kept", batch([]influencer.Sample{s(1, func(x *influencer.Sample) { x.Username = "" })}, fail(1, minute)),
			batch([]influencer.Sample{}, fail(1, minute)),
			[]influencer.Failure{invalid(1, "username is empty")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			valid, rejected := influencer.CheckBatch(tc.in, influencer.SameMinute)
			assert.Equal(t, tc.wantRejected, rejected)
			assert.Equal(t, tc.wantValid.Minute, valid.Minute)
			assert.Equal(t, tc.wantValid.Shard, valid.Shard)
			// Order kept; an empty slice may be nil.
			assert.Equal(t, orNil(tc.wantValid.Samples), orNil(valid.Samples))
			assert.Equal(t, orNil(tc.wantValid.Failures), orNil(valid.Failures))
		})
	}
}

func orNil[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

func TestCheckBatchUnalignedBatchMinute(t *testing.T) {
	t.Parallel()
	m := minute.Add(30 * time.Second)
	x := validSample()
	x.Minute = m
	valid, rejected := influencer.CheckBatch(influencer.Batch{Minute: m, Samples: []influencer.Sample{x},
		Failures: []influencer.Failure{{PK: 2, Minute: m}}}, influencer.SameMinute)
	assert.Empty(t, valid.Samples)
	assert.Empty(t, valid.Failures)
	assert.Equal(t, []influencer.Failure{
		{PK: 1000000, Minute: m, Class: influencer.ClassInvalid, Reason: "minute 2026-11-25T12:00:30Z is not minute-aligned"},
		{PK: 2, Minute: m, Class: influencer.ClassInvalid, Reason: "minute 2026-11-25T12:00:30Z is not minute-aligned"},
	}, rejected)
}

func TestCheckBatchValidBatchIsNotCopied(t *testing.T) {
	t.Parallel()
	in := influencer.Batch{Minute: minute, Samples: []influencer.Sample{validSample()},
		Failures: []influencer.Failure{{PK: 2, Minute: minute}}}
	valid, rejected := influencer.CheckBatch(in, influencer.SameMinute)
	assert.Nil(t, rejected)
	assert.Same(t, &in.Samples[0], &valid.Samples[0])
	assert.Same(t, &in.Failures[0], &valid.Failures[0])
}

// AnyMinute is the stores' rule: rows for other minutes are fine, the
// other rules hold.
func TestCheckBatchAnyMinute(t *testing.T) {
	t.Parallel()
	at := func(pk int64, m time.Time) influencer.Sample {
		x := validSample()
		x.PK, x.Minute = pk, m
		return x
	}
	next := minute.Add(time.Minute)
	in := influencer.Batch{Minute: minute, Shard: 1,
		Samples: []influencer.Sample{at(1, minute), at(2, next), at(1, next), at(3, next.Add(time.Second))},
		Failures: []influencer.Failure{
			{PK: 2, Minute: next}, // shadowed by the sample of (2, next)
			{PK: 1, Minute: next}, // pk 1 is sampled at minute, not next: kept
			{PK: 4, Minute: next.Add(time.Millisecond)},
		}}
	valid, rejected := influencer.CheckBatch(in, influencer.AnyMinute)
	assert.Equal(t, []influencer.Sample{at(1, minute), at(2, next)}, valid.Samples)
	assert.Equal(t, []influencer.Failure{{PK: 1, Minute: next}}, valid.Failures)
	assert.Equal(t, []influencer.Failure{
		{PK: 1, Minute: minute, Class: influencer.ClassInvalid, Reason: "duplicate pk in batch"},
		{PK: 3, Minute: minute, Class: influencer.ClassInvalid, Reason: "minute 2026-11-25T12:01:01Z is not minute-aligned"},
		{PK: 4, Minute: minute, Class: influencer.ClassInvalid, Reason: "minute 2026-11-25T12:01:00.001Z is not minute-aligned"},
	}, rejected)
}

func BenchmarkCheckBatch(b *testing.B) {
	in := influencer.Batch{Minute: minute, Samples: make([]influencer.Sample, 1000)}
	for i := range in.Samples {
		in.Samples[i] = validSample()
		in.Samples[i].PK = int64(1_000_000 + i)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, rejected := influencer.CheckBatch(in, influencer.SameMinute); rejected != nil {
			b.Fatal(rejected)
		}
	}
}
