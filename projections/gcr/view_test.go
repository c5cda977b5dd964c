package gcr

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/store"
	"github.com/oklog/ulid/v2"
)

var (
	shredded   = bytes.Repeat([]byte{0x33}, 16) // a destroyed data key
	errNoKey   = errors.New("keys: destroyed")
	openOrFail = func(key, sealed []byte) ([]byte, error) {
		if bytes.Equal(key, shredded) {
			return nil, errNoKey
		}
		return xorOpen(key, sealed)
	}
)

func ulidOf(b []byte) string { return ulid.ULID(b).String() }

func jsonEqual(t *testing.T, got any, want string) {
	t.Helper()
	gb, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var g, w any
	if err := json.Unmarshal(gb, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want: %v", err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("got\n%s\nwant\n%s", gb, want)
	}
}

func TestView(t *testing.T) {
	const t0 = 1700000000000 // 2023-11-14T22:13:20Z
	p, mem := New(nil), store.NewMem()
	tx := p.Begin(mem)

	id1 := identify(1, t0)
	id1.Traits = map[string][]byte{"name": sealValue(t, testKey, "Rob"), "age": sealValue(t, testKey, 42)}
	mustAdd(t, tx, pid(1), id1,
		ref("email", 0xaa, sealValue(t, testKey, "rob@example.com")),
		ref("user_id", 0x01, sealValue(t, testKey, "u-1")))
	ev2 := track(2, t0+1000, "Order Completed", map[string]any{"revenue": 100})
	ev2.Consent = map[string]bool{"email": false}
	mustAdd(t, tx, pid(1), ev2)
	ev3 := track(3, t0+2000, "Order Completed", map[string]any{"revenue": "50.5"})
	ev3.Key = shredded
	ev3.Traits = map[string][]byte{"plan": sealValue(t, shredded, "gold")}
	mustAdd(t, tx, pid(1), ev3, ref("email", 0xbb, sealValue(t, shredded, "old@example.com")))
	ev4 := &event.Record{ID: eid(4), Kind: event.Page, Name: "Home", Time: t0 - 1000, Source: "web", Channel: "web", DeviceType: "desktop", Key: testKey,
		Consent: map[string]bool{"email": true, "sms": true}}
	mustAdd(t, tx, pid(2), ev4, ref("email", 0xcc, sealValue(t, testKey, "second@example.com")))
	if err := tx.Merge(pid(2), pid(1)); err != nil {
		t.Fatal(err)
	}
	mustFlush(t, tx)
	prof := mustGet(t, p, mem, pid(1))

	v, err := prof.View(openOrFail)
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, v, `{
		"profile_id": "`+ulidOf(pid(1))+`",
		"identifiers": {
			"email": [
				{"value": "second@example.com", "first_seen": "2023-11-14T22:13:19Z", "last_seen": "2023-11-14T22:13:19Z"},
				{"value": "rob@example.com", "first_seen": "2023-11-14T22:13:20Z", "last_seen": "2023-11-14T22:13:20Z"},
				{"value": null, "redacted": true, "first_seen": "2023-11-14T22:13:22Z", "last_seen": "2023-11-14T22:13:22Z"}
			],
			"user_id": [{"value": "u-1", "first_seen": "2023-11-14T22:13:20Z", "last_seen": "2023-11-14T22:13:20Z"}]
		},
		"traits": {"name": "Rob", "age": 42, "plan": null},
		"stats": {
			"first_seen": "2023-11-14T22:13:19Z", "last_seen": "2023-11-14T22:13:22Z", "total_events": 4,
			"event_counts": {"Order Completed": 2},
			"kind_counts": {"identify": 1, "track": 2, "page": 1},
			"sources": {"ios": 1, "web": 3},
			"channels": {"mobile": 1, "web": 3},
			"devices": {"ios": 1, "desktop": 1}
		},
		"revenue": {"Order Completed": {"count": 2, "total": 150.5}},
		"audiences": {},
		"predictions": {},
		"merged_from": ["`+ulidOf(pid(2))+`"],
		"consent": {
			"email": {"granted": false, "time": "2023-11-14T22:13:21Z", "event_id": "`+ulidOf(eid(2))+`", "source": "web"},
			"sms": {"granted": true, "time": "2023-11-14T22:13:19Z", "event_id": "`+ulidOf(eid(4))+`", "source": "web"}
		},
		"features": {"as_of": "2023-11-14T22:13:22Z", "purchases": 1, "orders": 2,
			"first_purchase": "2023-11-14", "last_purchase": "2023-11-14", "spend_sum": 150.5, "repeat_spend_mean": null,
			"active_days": 1, "last_activity": "2023-11-14T22:13:22Z", "days_since_last_activity": 0,
			"events": {"Order Completed": {"7d": 1.9999988539239695, "30d": 1.999999732582142}},
			"categories": [], "products": [],
			"channel_mix": {"mobile": 0.25, "web": 0.75}, "device_mix": {"desktop": 0.5, "ios": 0.5}},
		"redacted": true,
		"redacted_traits": ["plan"]
	}`)

	// With every key available nothing is redacted.
	v, err = prof.View(func(key, sealed []byte) ([]byte, error) { return xorOpen(key, sealed) })
	if err != nil {
		t.Fatal(err)
	}
	if v.Redacted || v.Traits["plan"] != "gold" || v.Identifiers["email"][2].Value != "old@example.com" {
		t.Errorf("all keys available: %+v", v)
	}

	// A plaintext that is not msgpack is an error, not a redaction.
	if _, err := prof.View(func(_, _ []byte) ([]byte, error) { return []byte{0xc1}, nil }); err == nil {
		t.Error("undecodable plaintext: no error")
	}

	// An empty profile has null first/last seen and empty collections.
	v, err = (&Profile{ID: pid(9)}).View(openOrFail)
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, v, `{"profile_id": "`+ulidOf(pid(9))+`", "identifiers": {}, "traits": {},
		"stats": {"first_seen": null, "last_seen": null, "total_events": 0, "event_counts": {}, "kind_counts": {}, "sources": {}, "channels": {}, "devices": {}},
		"revenue": {}, "audiences": {}, "predictions": {}, "merged_from": [], "consent": {},
		"features": {"as_of": "1970-01-01T00:00:00Z", "purchases": 0, "orders": 0, "first_purchase": null, "last_purchase": null,
			"spend_sum": 0, "repeat_spend_mean": null, "active_days": 0, "last_activity": null, "days_since_last_activity": null,
			"events": {}, "categories": [], "products": [], "channel_mix": {}, "device_mix": {}}}`)

	// Defaults fill the channels without a statement, and only those.
	v, err = prof.View(openOrFail)
	if err != nil {
		t.Fatal(err)
	}
	v.FillConsentDefaults(event.ConsentChannels, false)
	jsonEqual(t, v.Consent, `{
		"email": {"granted": false, "time": "2023-11-14T22:13:21Z", "event_id": "`+ulidOf(eid(2))+`", "source": "web"},
		"sms": {"granted": true, "time": "2023-11-14T22:13:19Z", "event_id": "`+ulidOf(eid(4))+`", "source": "web"},
		"push": {"granted": false, "default": true}, "ads": {"granted": false, "default": true}, "web": {"granted": false, "default": true}
	}`)
	if prof.ConsentGranted("email", true) || !prof.ConsentGranted("sms", false) || !prof.ConsentGranted("push", true) || prof.ConsentGranted("push", false) {
		t.Error("ConsentGranted disagrees with the statements and the default")
	}
}

func TestRecordView(t *testing.T) {
	const t0 = 1700000000000
	priv := event.Private{UserID: "u-1", AnonymousID: "a-1", Context: map[string]any{"ip": "1.2.3.4", "library": map[string]any{"name": "js"}}, SentAt: t0 + 5}
	rec := &event.Record{
		ID: eid(1), MessageID: "msg-1", Source: "web", Kind: event.Identify, Time: t0, Received: t0 + 10,
		Key: testKey, Channel: "web",
		IDs: []event.IDRef{
			ref("user_id", 1, sealValue(t, testKey, "u-1")),
			ref("loyalty_id", 2, sealValue(t, testKey, "L-77")),
		},
		Traits:           map[string][]byte{"name": sealValue(t, testKey, "Rob")},
		SealedProperties: sealValue(t, testKey, map[string]any{"x": "y", "note": "for Rob"}),
		Private:          sealValue(t, testKey, priv),
	}
	m, err := RecordView(rec, openOrFail)
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, m, `{
		"id": "`+ulidOf(eid(1))+`", "type": "identify", "messageId": "msg-1", "source": "web",
		"timestamp": "2023-11-14T22:13:20Z", "receivedAt": "2023-11-14T22:13:20.01Z", "sentAt": "2023-11-14T22:13:20.005Z",
		"userId": "u-1", "anonymousId": "a-1",
		"traits": {"name": "Rob"},
		"properties": {"x": "y", "note": "for Rob"},
		"context": {"ip": "1.2.3.4", "library": {"name": "js"},
			"externalIds": [{"id": "L-77", "type": "loyalty_id", "collection": "users", "encoding": "none"}]}
	}`)

	// Properties the state machine opened already are shown as they are.
	opened := *rec
	opened.Properties = map[string]any{"x": "opened"}
	if m, err := RecordView(&opened, openOrFail); err != nil || !reflect.DeepEqual(m["properties"], opened.Properties) {
		t.Fatalf("opened properties: %v, %v", m["properties"], err)
	}

	// Under a destroyed key only the plaintext fields remain.
	rec.Key = shredded
	m, err = RecordView(rec, openOrFail)
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, m, `{
		"id": "`+ulidOf(eid(1))+`", "type": "identify", "messageId": "msg-1", "source": "web",
		"timestamp": "2023-11-14T22:13:20Z", "receivedAt": "2023-11-14T22:13:20.01Z",
		"traits": {"name": null}, "properties": {}, "context": {}, "redacted": true
	}`)

	// A track event carries its name and no traits.
	m, err = RecordView(track(2, t0, "Order Completed", nil), openOrFail)
	if err != nil {
		t.Fatal(err)
	}
	if m["event"] != "Order Completed" || m["type"] != "track" || m["traits"] != nil || m["redacted"] != nil {
		t.Errorf("track view = %v", m)
	}
}

// TestOpenValueCorruptPlaintext: an opened value that claims more elements
// than it holds is refused before the msgpack library sizes a slice by the
// claim (4 billion elements here: tens of GB).
func TestOpenValueCorruptPlaintext(t *testing.T) {
	identity := func(_, sealed []byte) ([]byte, error) { return sealed, nil }
	for _, plain := range [][]byte{
		{0xdd, 0xff, 0xff, 0xff, 0xff},       // array32 of 2^32-1 elements, none present
		{0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1}, // map32 likewise
	} {
		if _, ok, err := openValue(identity, nil, plain); err == nil || ok {
			t.Errorf("openValue(% x): ok %v, err %v; want a decode error", plain, ok, err)
		}
	}
	if v, ok, err := openValue(identity, nil, []byte{0x92, 0x01, 0xa1, 'x'}); err != nil || !ok || !reflect.DeepEqual(v, []any{int8(1), "x"}) {
		t.Errorf("openValue of a sound value: %#v, %v, %v", v, ok, err)
	}
}
