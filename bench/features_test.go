package bench

import (
	"cmp"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/event"
	wlg "github.com/aurumcdp/aurum/internal/workload"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/projections/features"
	"github.com/aurumcdp/aurum/seal"
	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

// featuresLog is an e-commerce log for the feature projection's cost:
// batches of 100 events for people over 60 days, views and adds of one of
// 500 products in 40 categories, orders with a products[] list of two and
// revenue, refunds, pages.
func featuresLog(tb testing.TB, kr *seal.Keyring, people, events int) [][]byte {
	names := []string{"Product Viewed", "Product Viewed", "Product Viewed", "Product Added", "Order Completed", "Order Refunded"}
	var out [][]byte
	t0 := int64(1_780_000_000_000)
	span := int64(60 * 86_400_000)
	for lo := 0; lo < events; lo += 100 {
		b := event.Batch{Received: t0 + span}
		for i := lo; i < min(lo+100, events); i++ {
			p := (i * 7919) % people
			h := make([]byte, 16)
			copy(h, fmt.Sprintf("u%015d", p))
			id := make([]byte, 16)
			copy(id, fmt.Sprintf("e%015d", i))
			prod := (i * 31) % 500
			props := map[string]any{"product_id": fmt.Sprint("sku-", prod), "category": fmt.Sprint("cat-", prod%40)}
			name := names[i%len(names)]
			if name == "Order Completed" {
				props = map[string]any{"revenue": 120.0, "products": []any{
					map[string]any{"product_id": fmt.Sprint("sku-", prod), "category": fmt.Sprint("cat-", prod%40)},
					map[string]any{"product_id": fmt.Sprint("sku-", (prod+7)%500), "category": fmt.Sprint("cat-", (prod+7)%40)},
				}}
			}
			b.Records = append(b.Records, event.Record{ID: id, MessageID: fmt.Sprint(i), Source: "web", Kind: event.Track,
				Event: name, Time: t0 + int64(i)*span/int64(events), Received: b.Received, Key: h,
				IDs: []event.IDRef{{Type: event.UserID, Hash: h}}, Properties: props})
		}
		out = append(out, sealedEntry(tb, kr, &b))
	}
	return out
}

// applyCPU applies log to a fresh state machine on Pebble (after the
// eight example audiences when audiences is set), in groups of entries as
// the engine's apply loop does under load (ApplyHeld, Release, one commit
// per group), and returns the process CPU time per event (wall time where
// CPU time is not available).
func applyCPU(tb testing.TB, kr *seal.Keyring, log [][]byte, events int, noFeatures, audiences bool) time.Duration {
	db, err := store.Open(tb.TempDir(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	opts := projections.Options{Partitions: 16, Open: kr.Open, NoFeatures: noFeatures}
	if !noFeatures {
		// As the engine runs it: categories and products kept under a
		// keyed hash (engine.openStateMachine).
		opts.InteractionKey = engine.InteractionKey(kr)
	}
	sm := projections.New(opts)
	// As the engine's apply loop does with entries at hand (engine/apply.go
	// group): up to engine.DefaultApplyGroupEntries entries in one batch,
	// the GCRs held between them (ApplyHeld), released and committed once.
	seq := uint64(0)
	var batch *store.Batch
	commit := func() {
		if batch == nil {
			return
		}
		if err := sm.Release(batch); err != nil {
			tb.Fatal(err)
		}
		if err := db.Commit(batch, false); err != nil {
			tb.Fatal(err)
		}
		batch.Close()
		batch = nil
	}
	apply := func(subject string, data []byte) {
		seq++
		if batch == nil {
			batch = db.NewBatch()
		}
		if _, err := sm.ApplyHeld(batch, seq, subject, data); err != nil {
			tb.Fatal(err)
		}
		if seq%engine.DefaultApplyGroupEntries == 0 {
			commit()
		}
	}
	if audiences {
		for _, name := range sortedNames(exampleAudiences) {
			c, _ := msgpack.Marshal(&projections.Control{Kind: projections.ControlAudiencePut, Audience: audience.Definition{Name: name, Rule: exampleAudiences[name]}})
			apply(projections.SubjectControl, c)
		}
		commit()
	}
	cpu0, cpuOK := processCPU()
	start := time.Now()
	for _, data := range log {
		apply(projections.SubjectEvents, data)
	}
	commit()
	d := time.Since(start)
	if cpu1, ok := processCPU(); ok && cpuOK {
		d = cpu1 - cpu0
	}
	return d / time.Duration(events)
}

// BenchmarkApplyFeatures measures the feature projection's share of the
// apply cost (issue #12's budget: ≤ 10 % of apply CPU per event), without
// audiences: the state machine's cheapest apply, so the largest share.
// Each of b.N rounds (at least 5) applies the same log twice, with and
// without the feature projection (projections.Options.NoFeatures), in
// alternating order, each on a fresh store; it reports the medians and the
// median of the per-round ratios.
func BenchmarkApplyFeatures(b *testing.B) { benchFeatures(b, false) }

// BenchmarkApplyFeaturesAudiences is BenchmarkApplyFeatures with the eight
// example audiences, as the engine applies with them.
func BenchmarkApplyFeaturesAudiences(b *testing.B) { benchFeatures(b, true) }

// BenchmarkApplyFeaturesWorkload is BenchmarkApplyFeaturesAudiences on the
// demo's workload (internal/workload, as `aurum demo` and `make bench`
// send it: pages and screens, sign-ins, identifies with traits, product
// views and adds with a category, orders with products[], refunds; its
// products carry a sku, not a product_id, so only categories are
// interactions), 1,000 people over 30 days: the engine's apply as the
// product runs it, where BenchmarkApplyFeatures is the worst case (every
// event a track event with a category and a product, no audiences).
func BenchmarkApplyFeaturesWorkload(b *testing.B) {
	kr := benchKeyring(b)
	log, events, mix := workloadLog(b, kr, 1_000)
	b.Logf("%d events: %s", events, mix)
	benchFeaturesLog(b, kr, log, events, true)
}

// workloadLog is the demo workload of people as log entries of 100
// records, as the ingest edge makes them (identifiers as hashes, traits
// and properties sealed under the record's key), with its number of events
// and their mix (share per kind or track event name, and of events with a
// category).
func workloadLog(tb testing.TB, kr *seal.Keyring, people int) ([][]byte, int, string) {
	g := wlg.New(wlg.Config{People: people, Seed: 12})
	hash := func(typ, v string) []byte {
		h := sha256.Sum256([]byte(typ + "\x00" + v))
		return h[:16]
	}
	var out [][]byte
	var b event.Batch
	n, withCategory := 0, 0
	kinds := map[string]int{}
	flush := func() {
		if len(b.Records) > 0 {
			out = append(out, sealedEntry(tb, kr, &b))
			b = event.Batch{}
		}
	}
	for {
		ev, ok := g.Next()
		if !ok {
			break
		}
		var m struct {
			Type, Event, AnonymousID, UserID, MessageID, Timestamp string
			Properties                                             map[string]any
			Traits                                                 map[string]any
			Context                                                struct {
				Channel string
				Traits  map[string]any
				Device  struct{ Type string }
			}
		}
		if err := json.Unmarshal(ev.JSON, &m); err != nil {
			tb.Fatal(err)
		}
		at, err := time.Parse(time.RFC3339Nano, m.Timestamp)
		if err != nil {
			tb.Fatal(err)
		}
		rec := event.Record{MessageID: m.MessageID, Source: ev.Source, Kind: event.Kind(m.Type), Event: m.Event,
			Time: at.UnixMilli(), Received: at.UnixMilli(), Channel: m.Context.Channel, DeviceType: m.Context.Device.Type,
			Properties: m.Properties}
		id := sha256.Sum256([]byte(m.MessageID))
		rec.ID = id[:16]
		if m.AnonymousID != "" {
			rec.IDs = append(rec.IDs, event.IDRef{Type: event.AnonymousID, Hash: hash(event.AnonymousID, m.AnonymousID)})
		}
		if m.UserID != "" {
			rec.IDs = append(rec.IDs, event.IDRef{Type: event.UserID, Hash: hash(event.UserID, m.UserID)})
		}
		traits := m.Traits
		if traits == nil {
			traits = m.Context.Traits
		}
		if e, ok := traits["email"].(string); ok {
			rec.IDs = append(rec.IDs, event.IDRef{Type: event.Email, Hash: hash(event.Email, e)})
		}
		if len(rec.IDs) == 0 {
			continue
		}
		rec.Key = rec.IDs[0].Hash
		if len(m.Traits) > 0 {
			if err := kr.Ensure([][]byte{rec.Key}); err != nil {
				tb.Fatal(err)
			}
			rec.Traits = map[string][]byte{}
			for k, v := range m.Traits {
				pt, err := msgpack.Marshal(v)
				if err != nil {
					tb.Fatal(err)
				}
				if rec.Traits[k], err = kr.Seal(rec.Key, pt); err != nil {
					tb.Fatal(err)
				}
			}
		}
		b.Records = append(b.Records, rec)
		b.Received = max(b.Received, rec.Received)
		n++
		kinds[cmp.Or(rec.Event, string(rec.Kind))]++
		features.EachInteraction(&rec, func(category, _ string) {
			if category != "" {
				withCategory++
			}
		})
		if len(b.Records) == 100 {
			flush()
		}
	}
	flush()
	var mix []string
	for _, k := range slices.Sorted(maps.Keys(kinds)) {
		mix = append(mix, fmt.Sprintf("%s %.1f%%", k, 100*float64(kinds[k])/float64(n)))
	}
	return out, n, fmt.Sprintf("%s; category interactions per event %.2f", strings.Join(mix, ", "), float64(withCategory)/float64(n))
}

func benchFeatures(b *testing.B, audiences bool) {
	const events, people = 20_000, 1_000
	kr := benchKeyring(b)
	benchFeaturesLog(b, kr, featuresLog(b, kr, people, events), events, audiences)
}

// benchFeaturesLog applies log (of events events) with and without the
// feature projection in b.N (at least 5) interleaved rounds.
//
// AURUM_BENCH_FEATURES_HALF=with (or without) applies only that half, b.N
// times, for a CPU profile of each half in its own process (compare them
// with go tool pprof -diff_base): no ratio is reported.
func benchFeaturesLog(b *testing.B, kr *seal.Keyring, log [][]byte, events int, audiences bool) {
	if half := os.Getenv("AURUM_BENCH_FEATURES_HALF"); half != "" {
		if half != "with" && half != "without" {
			b.Fatalf("AURUM_BENCH_FEATURES_HALF=%q, want with or without", half)
		}
		var cpu []time.Duration
		b.ResetTimer()
		for range b.N {
			cpu = append(cpu, applyCPU(b, kr, log, events, half == "without", audiences))
		}
		b.ReportMetric(float64(median(cpu).Nanoseconds()), "cpu-ns/event-"+half)
		return
	}
	rounds := max(b.N, 5)
	var with, without []time.Duration
	var ratios []float64
	b.ResetTimer()
	for r := range rounds {
		var w, wo time.Duration
		if r%2 == 0 {
			w = applyCPU(b, kr, log, events, false, audiences)
			wo = applyCPU(b, kr, log, events, true, audiences)
		} else {
			wo = applyCPU(b, kr, log, events, true, audiences)
			w = applyCPU(b, kr, log, events, false, audiences)
		}
		with, without = append(with, w), append(without, wo)
		ratios = append(ratios, float64(w)/float64(wo))
		b.Logf("round %d: with %v/event, without %v/event, ratio %.3f", r, w, wo, float64(w)/float64(wo))
	}
	b.ReportMetric(float64(median(with).Nanoseconds()), "cpu-ns/event-with")
	b.ReportMetric(float64(median(without).Nanoseconds()), "cpu-ns/event-without")
	b.ReportMetric(medianF(ratios), "ratio")
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianF(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
