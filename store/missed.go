package store

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/mockstagram/pipeline/influencer"
)

// MissedBuckets is the number of buckets the stores group a minute's missed
// pks in: a pk's bucket is influencer.ShardOf(pk, MissedBuckets), a function
// of the pk alone, so the miss of a (pk, minute) is found again from the pk
// whatever batch (shard) it came in. With the pipeline's shard count a
// multiple of MissedBuckets (the default 1024 is), all pks of one shard
// share one bucket and a batch's failures make one group per class and
// reason; a shard count of 2^k below it spreads them over 1024/2^k buckets.
const MissedBuckets = 1024

// MissedBucket is influencer.ShardOf(pk, MissedBuckets), without allocating.
func MissedBucket(pk int64) int {
	// FNV-1a (32 bits) of the decimal pk, as influencer.ShardOf.
	var buf [20]byte
	i := len(buf)
	u := uint64(pk)
	neg := pk < 0
	if neg {
		u = uint64(-pk)
	}
	for {
		i--
		buf[i] = byte('0' + u%10)
		u /= 10
		if u == 0 {
			break
		}
	}
	h := uint32(2166136261)
	if neg {
		h = (h ^ '-') * 16777619
	}
	for _, c := range buf[i:] {
		h = (h ^ uint32(c)) * 16777619
	}
	return int(h % MissedBuckets)
}

// ClassNotScheduled is the class of the misses Reconcile records: a
// (pk, minute) for which nothing was stored or missed by the minute's
// deadline, because its shard was never scheduled (no scheduler was
// running) or its task or result was lost.
const ClassNotScheduled = "not-scheduled"

// TrackedAt reports whether a registry entry counts as tracked at minute
// for Reconcile: it is active and was tracked (its updatedAt) at or before
// the minute's start. The scheduler loads the registry as a minute starts,
// and the tracked count in effect at a minute is the one of the last change
// at or before it, so a pk tracked during minute M counts from M+1 on. An
// entry untracked since is not reconciled (its activation time is gone).
func TrackedAt(active bool, updatedAt, minute time.Time) bool {
	return active && !updatedAt.After(minute)
}

// ReconcileChunk is how many missed pks Reconcile records per Record call
// at most (whole buckets, so one call takes few bucket locks).
const ReconcileChunk = 16384

// ReconcileBatches splits the failures of pks for minute (class
// ClassNotScheduled, reason) into batches of whole buckets (see
// MissedBucket) of about ReconcileChunk failures each.
func ReconcileBatches(minute time.Time, pks []int64, reason string) []influencer.Batch {
	byBucket := make(map[int][]int64)
	for _, pk := range pks {
		b := MissedBucket(pk)
		byBucket[b] = append(byBucket[b], pk)
	}
	buckets := make([]int, 0, len(byBucket))
	for b := range byBucket {
		buckets = append(buckets, b)
	}
	slices.Sort(buckets)
	var (
		out []influencer.Batch
		cur influencer.Batch
	)
	for _, b := range buckets {
		if len(cur.Failures) > 0 && len(cur.Failures)+len(byBucket[b]) > ReconcileChunk {
			out = append(out, cur)
			cur = influencer.Batch{}
		}
		if len(cur.Failures) == 0 {
			cur = influencer.Batch{Minute: minute, Shard: b, Samples: []influencer.Sample{}}
		}
		for _, pk := range byBucket[b] {
			cur.Failures = append(cur.Failures, influencer.Failure{PK: pk, Minute: minute, Class: ClassNotScheduled, Reason: reason})
		}
	}
	if len(cur.Failures) > 0 {
		out = append(out, cur)
	}
	return out
}

// ValidateReconcileMinute refuses a minute that is not minute-aligned.
// Errors wrap ErrInvalid.
func ValidateReconcileMinute(minute time.Time) error {
	if !influencer.IsMinute(minute) {
		return fmt.Errorf("%w: reconcile minute %s is not minute-aligned", ErrInvalid, minute.Format(time.RFC3339Nano))
	}
	return nil
}

// MaxMissedReasons bounds the groups of one class in one bucket and minute
// of a batch: when its failures have more distinct reasons (say connection
// errors that name each pk's URL), the MaxMissedReasons-1 most frequent
// keep their own groups and the rest share one group whose reason is their
// most frequent one followed by "[and N other reasons]".
const MaxMissedReasons = 4

// MissedGroup is the failures of one batch that share a minute, a bucket, a
// class and a reason: the unit the stores record misses in.
type MissedGroup struct {
	Minute time.Time
	Bucket int
	Class  string
	Reason string
	PKs    []int64 // ascending, distinct
}

// GroupFailures groups a batch's failures for recording: the first failure
// of each (pk, minute) counts (later ones are redeliveries within the
// batch), each pk keeps its class, and reasons are summarized as
// MaxMissedReasons says. Groups come ordered by minute, bucket, class and
// reason.
func GroupFailures(failures []influencer.Failure) []MissedGroup {
	if len(failures) == 0 {
		return nil
	}
	type pkMinute struct {
		pk     int64
		minute int64
	}
	type classKey struct {
		minute int64
		bucket int
		class  string
	}
	seen := make(map[pkMinute]struct{}, len(failures))
	// byClass[k][reason] lists the pks of class k with that reason.
	byClass := make(map[classKey]map[string][]int64)
	minutes := make(map[int64]time.Time)
	for _, f := range failures {
		m := f.Minute.Unix()
		if _, dup := seen[pkMinute{f.PK, m}]; dup {
			continue
		}
		seen[pkMinute{f.PK, m}] = struct{}{}
		if _, ok := minutes[m]; !ok {
			minutes[m] = f.Minute
		}
		k := classKey{minute: m, bucket: MissedBucket(f.PK), class: f.Class}
		reasons := byClass[k]
		if reasons == nil {
			reasons = make(map[string][]int64, 1)
			byClass[k] = reasons
		}
		reasons[f.Reason] = append(reasons[f.Reason], f.PK)
	}
	out := make([]MissedGroup, 0, len(byClass))
	for k, reasons := range byClass {
		type reasonPKs struct {
			reason string
			pks    []int64
		}
		rs := make([]reasonPKs, 0, len(reasons))
		for r, pks := range reasons {
			rs = append(rs, reasonPKs{r, pks})
		}
		// Most frequent first, then by text.
		slices.SortFunc(rs, func(a, b reasonPKs) int {
			if c := cmp.Compare(len(b.pks), len(a.pks)); c != 0 {
				return c
			}
			return cmp.Compare(a.reason, b.reason)
		})
		if len(rs) > MaxMissedReasons {
			rest := rs[MaxMissedReasons-1:]
			merged := reasonPKs{reason: fmt.Sprintf("%s [and %d other reasons]", rest[0].reason, len(rest)-1)}
			for _, r := range rest {
				merged.pks = append(merged.pks, r.pks...)
			}
			rs = append(rs[:MaxMissedReasons-1], merged)
		}
		for _, r := range rs {
			slices.Sort(r.pks)
			out = append(out, MissedGroup{Minute: minutes[k.minute], Bucket: k.bucket, Class: k.class, Reason: r.reason, PKs: r.pks})
		}
	}
	slices.SortFunc(out, func(a, b MissedGroup) int {
		return cmp.Or(a.Minute.Compare(b.Minute), cmp.Compare(a.Bucket, b.Bucket),
			cmp.Compare(a.Class, b.Class), cmp.Compare(a.Reason, b.Reason))
	})
	return out
}
