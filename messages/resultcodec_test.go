package messages

import (
	"encoding/json"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/mockstagram/pipeline/influencer"
)

var codecMinute = time.Date(2026, 11, 25, 12, 7, 0, 0, time.UTC)

// fuzzBatch is a batch made of the fuzzer's values: a sample and a failure
// with the given text, times and numbers, and a second sample in a zone.
func fuzzBatch(text string, pk int64, nanos int64, offset int, attempts int, nilSamples bool) influencer.Batch {
	at := time.Unix(0, nanos).UTC()
	zone := time.FixedZone("z", (offset%(24*60))*60)
	b := influencer.Batch{Minute: codecMinute, Shard: int(pk % 2048)}
	if !nilSamples {
		b.Samples = []influencer.Sample{
			{PK: pk, Username: text, FollowerCount: nanos, FollowingCount: -pk, Minute: codecMinute, FetchedAt: at},
			{PK: pk + 1, Username: "u", Minute: at.In(zone), FetchedAt: at.In(zone)},
		}
	}
	if attempts%3 != 0 {
		b.Failures = []influencer.Failure{{PK: pk, Minute: at, Class: text, Reason: text + text, Attempts: attempts}}
	}
	return b
}

// FuzzResultCodec: appendResult writes encoding/json's bytes for Result
// (or fails when it does), and the scanner's reading of any payload is
// encoding/json's: when it takes one, the strict decoder takes it too and
// decodes the same batch.
func FuzzResultCodec(f *testing.F) {
	f.Add("alice", int64(1000000), int64(1764072422345000000), 60, 3, false)
	f.Add(`bøb "q" <x> & \ `+"\u2028\x00\xff", int64(-5), int64(0), -330, 0, true)
	f.Add("", int64(9223372036854775807), int64(-62135596800000000000/100), 0, 1, false)
	f.Fuzz(func(t *testing.T, text string, pk int64, nanos int64, offset int, attempts int, nilSamples bool) {
		b := fuzzBatch(text, pk, nanos, offset, attempts, nilSamples)
		want, werr := json.Marshal(ResultOf(b))
		got, gerr := appendResult(nil, b)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("encoding/json error %v, appendResult error %v", werr, gerr)
		}
		if werr != nil {
			return
		}
		if string(got) != string(want) {
			t.Fatalf("appendResult:\n%s\nencoding/json:\n%s", got, want)
		}
		checkScan(t, got)
		checkScan(t, []byte(text))
	})
}

// checkScan: what scanResult takes, the strict decoder takes alike.
func checkScan(t *testing.T, p []byte) {
	t.Helper()
	got, ok := scanResult(p)
	if !ok {
		return
	}
	var r Result
	if err := decodeStrict(p, &r); err != nil {
		t.Fatalf("scanned %q, which encoding/json refuses: %v", p, err)
	}
	if want := r.Batch(); !reflect.DeepEqual(got, want) {
		t.Fatalf("payload %q: scanned %+v, encoding/json decodes %+v", p, got, want)
	}
}

// The scanner reads what NewResult writes (so the fast path is the path)
// and leaves other forms to encoding/json.
func TestScanResult(t *testing.T) {
	t.Parallel()
	b := fuzzBatch("influencer-7", 7, codecMinute.Add(2345*time.Millisecond).UnixNano(), 0, 2, false)
	p, err := appendResult(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := scanResult(p); !ok {
		t.Fatalf("scanResult refused %s", p)
	}
	checkScan(t, p) // the same batch as encoding/json decodes
	for _, p := range []string{
		`{"minute":"2026-11-25T12:07:00Z", "shard":1,"samples":null}`,
		`{"shard":1,"minute":"2026-11-25T12:07:00Z","samples":null}`,
		`{"minute":"2026-11-25T13:07:00+01:00","shard":1,"samples":null}`,
		`{"minute":"2026-11-25T12:07:00Z","shard":1,"samples":null,"extra":1}`,
		`{"minute":"2026-11-25T12:07:00Z","shard":1,"samples":null} {}`,
		`{"minute":"2026-02-30T12:07:00Z","shard":1,"samples":null}`,
		`{"minute":"2026-11-25T12:07:60Z","shard":1,"samples":null}`,
		`{"minute":"2026-11-25T12:07:00.1234567890Z","shard":1,"samples":null}`,
		`{"minute":"2026-11-25T12:07:00Z","shard":01,"samples":null}`,
		`{"minute":"2026-11-25T12:07:00Z","shard":1,"samples":[{"pk":1,"username":"a\u0062","followerCount":1,"followingCount":1,"minute":"2026-11-25T12:07:00Z","fetchedAt":"2026-11-25T12:07:00Z"}]}`,
	} {
		if _, ok := scanResult([]byte(p)); ok {
			t.Errorf("scanResult took %s", p)
		}
		checkScan(t, []byte(p))
	}
}

// benchBatch is a shard's result: n samples fetched within a second.
func benchBatch(n int) influencer.Batch {
	b := influencer.Batch{Minute: codecMinute, Shard: 417, Samples: make([]influencer.Sample, n)}
	for i := range b.Samples {
		pk := int64(1_000_000 + i*1024)
		b.Samples[i] = influencer.Sample{PK: pk, Username: "influencer-" + strconv.FormatInt(pk, 10),
			FollowerCount: 123456 + pk, FollowingCount: 789, Minute: codecMinute,
			FetchedAt: codecMinute.Add(time.Duration(i) * 977 * time.Microsecond)}
	}
	return b
}

func BenchmarkNewResult(b *testing.B) {
	batch := benchBatch(1000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewResult(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch.Samples))/1000, "µs/sample")
}

func BenchmarkDecodeResult(b *testing.B) {
	msg, err := NewResult(benchBatch(1000))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeResult(msg.Payload); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000)/1000, "µs/sample")
}

// The encoding/json baselines of the two benchmarks above.
func BenchmarkNewResultJSON(b *testing.B) {
	batch := benchBatch(1000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := newJSON(ResultOf(batch), batch.Shard, batch.Minute); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch.Samples))/1000, "µs/sample")
}

func BenchmarkDecodeResultJSON(b *testing.B) {
	msg, err := NewResult(benchBatch(1000))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var r Result
		if err := decodeStrict(msg.Payload, &r); err != nil {
			b.Fatal(err)
		}
		_ = r.Batch()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000)/1000, "µs/sample")
}
