package engine

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/event"
)

// entryFormatEvents returns Segment events that exercise every record field:
// traits, properties of every JSON shape (small, negative and big integers,
// floats, nulls, nested objects and arrays), context, sentAt, consent,
// aliases that merge profiles, and repeated messageIds.
func entryFormatEvents(t *testing.T, round, n int) []event.Event {
	t.Helper()
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	var evs []event.Event
	for i := range n {
		p := i % 7
		var js string
		switch i % 5 {
		case 0:
			js = fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"u-%d","messageId":"m-%d-%d",
				"properties":{"revenue":%d.5,"qty":%d,"neg":-%d,"big":12345678901,"f":1e300,"none":null,"ok":true,
				"items":[{"sku":"S-%d","n":1},[],{}],"text":"%s"},"sentAt":"2026-11-01T11:59:00Z"}`,
				p, round, i, i, i*37, i*1000, i, string(bytes.Repeat([]byte("y"), i*3)))
		case 1:
			js = fmt.Sprintf(`{"type":"identify","userId":"u-%d","messageId":"m-%d-%d","traits":{"email":"P%d@Example.com",
				"name":"Person %d","plan":"gold","consent":{"email":true,"sms":false},"age":%d},"context":{"ip":"10.0.0.%d","page":{"url":"https://x/%d"}}}`,
				p, round, i, p, p, 20+i, i%250, i)
		case 2:
			js = fmt.Sprintf(`{"type":"page","name":"Home","anonymousId":"a-%d-%d","messageId":"m-%d-%d","context":{"device":{"type":"Mobile"}}}`,
				round, i, round, i)
		case 3:
			js = fmt.Sprintf(`{"type":"alias","userId":"u-%d","previousId":"a-%d-%d","messageId":"m-%d-%d"}`, p, round, i-1, round, i)
		case 4:
			js = fmt.Sprintf(`{"type":"track","event":"Viewed","anonymousId":"a-%d-%d","messageId":"m-0-%d","properties":{}}`, round, i, i-4) // repeats a messageId of round 0
		}
		ev, err := event.Parse([]byte(js), "", event.ParseOptions{Now: now})
		if err != nil {
			t.Fatalf("event %d: %v\n%s", i, err, js)
		}
		evs = append(evs, ev)
	}
	return evs
}

func openFormatEngine(t *testing.T, dir string) *Engine {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := Open(ctx, Options{DataDir: dir, NATSListen: "127.0.0.1:-1", MasterKey: bytes.Repeat([]byte{7}, 32),
		Partitions: 4})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return e
}

func ingestAndWait(t *testing.T, e *Engine, evs []event.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for lo := 0; lo < len(evs); lo += 10 {
		if err := e.Edge().Ingest(ctx, "web", evs[lo:min(lo+10, len(evs))]); err != nil {
			t.Fatalf("Ingest: %v", err)
		}
	}
	last, err := e.log.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.WaitApplied(ctx, last); err != nil {
		t.Fatal(err)
	}
}

// TestPayloadSealedOnLogAndInState: the properties, context, traits and
// raw ids of events reach neither the log entries nor the state store in
// plain text (only sealed under the person's data key), while the state
// machine opens the properties it needs (revenue) and the events query
// shows them.
func TestPayloadSealedOnLogAndInState(t *testing.T) {
	e := openFormatEngine(t, t.TempDir())
	defer e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.Gate().CreateSource(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	ingestAndWait(t, e, entryFormatEvents(t, 0, 40))
	secrets := [][]byte{[]byte("yyyyyyyyyyyy"), []byte("S-10"), []byte("Person 1"), []byte("10.0.0.6"), []byte("https://x/6"),
		[]byte("u-1"), []byte("a-0-2"), []byte("12345678901")}
	last, err := e.log.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, err := e.log.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for {
		en, err := r.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			if bytes.Contains(en.Data, s) {
				t.Errorf("log entry %d (%s) holds %q in plain text", en.Seq, en.Subject, s)
			}
		}
		if en.Seq >= last {
			break
		}
	}
	err = e.state.Scan(nil, []byte{0xff}, false, func(k, v []byte) bool {
		for _, s := range secrets {
			if bytes.Contains(v, s) {
				t.Errorf("state key %q holds %q in plain text", k, s)
			}
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	// Opened where needed: the revenue of u-0's orders and the events
	// query.
	v, err := e.Reader().Profile("user_id:u-0")
	if err != nil {
		t.Fatal(err)
	}
	if rev := v.Revenue["Order Completed"]; rev.Count == 0 || rev.Total == 0 {
		t.Errorf("no revenue: properties not opened by the state machine: %+v", v.Revenue)
	}
	evs, err := e.Reader().Events("user_id:u-0", 100)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ev := range evs {
		if p, _ := ev["properties"].(map[string]any); p["text"] != nil && p["items"] != nil {
			found = true
		}
	}
	if !found {
		t.Errorf("the events query shows no properties: %v", evs)
	}
}
