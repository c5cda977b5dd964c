package event

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

func testOpts() ParseOptions {
	return ParseOptions{
		Now: testNow,
		Blocked: func(typ, v string) bool {
			return v == "undefined" || (typ == Email && v == "test@test.com")
		},
	}
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ids(pairs ...string) []Identifier {
	var out []Identifier
	for _, p := range pairs {
		weak := strings.HasPrefix(p, "~")
		p = strings.TrimPrefix(p, "~")
		typ, v, _ := strings.Cut(p, ":")
		out = append(out, Identifier{Type: typ, Value: v, Weak: weak})
	}
	return out
}

func TestParseSamples(t *testing.T) {
	tests := []struct {
		file       string
		kind       Kind // endpoint kind
		wantKind   Kind
		event      string
		name       string
		ids        []Identifier
		ts         time.Time
		channel    string
		deviceType string
		messageID  string
	}{
		{
			file: "segment_track.json", kind: Track, wantKind: Track, event: "Order Completed",
			ids: ids("user_id:u-1001", "anonymous_id:507f191e810c19729de860ea", "email:peter@example.com", "loyalty_id:L-77"),
			ts:  time.Date(2015, 12, 12, 19, 11, 1, 249e6, time.UTC), channel: "server",
			messageID: "ajs-next-1690000000000-0a1b2c3d",
		},
		{
			file: "segment_identify.json", wantKind: Identify,
			ids: ids("user_id:97980", "anonymous_id:507f191e810c19729de860ea", "email:peter@example.com", "phone:+14155552671"),
			// sentAt − originalTimestamp = 276 ms of client clock.
			ts: testNow.Add(-276 * time.Millisecond), channel: "mobile", deviceType: "ios",
			messageID: "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
		},
		{
			file: "segment_page.json", kind: Page, wantKind: Page, name: "Home",
			ids: ids("anonymous_id:a-55"), ts: time.Date(2015, 2, 23, 21, 28, 55, 0, time.UTC), channel: "web",
			messageID: "ajs-f8ca1e4de5024d9430b3928bd8ac6b96",
		},
		{
			file: "segment_screen.json", wantKind: Screen, name: "Home",
			ids: ids("user_id:u-7"), ts: time.Date(2015, 2, 23, 22, 28, 55, 0, time.UTC), channel: "mobile", deviceType: "android",
			messageID: "ios-1",
		},
		{
			file: "segment_group.json", wantKind: Group,
			ids: ids("user_id:u-7"), ts: time.UnixMilli(1424730535387).UTC(), channel: "server",
			messageID: "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
		},
		{
			file: "segment_alias.json", kind: Alias, wantKind: Alias,
			ids: ids("user_id:507f191e81", "~user_id:39239-239239-239239-23923", "~anonymous_id:39239-239239-239239-23923"),
			ts:  time.Date(2015, 2, 23, 22, 28, 55, 111e6, time.UTC), channel: "server", messageID: "alias-1",
		},
		{
			file: "rudder_track.json", wantKind: Track, event: "Product Viewed",
			ids: ids("user_id:12345", "anonymous_id:fe5a8b0c-1234-4c9d-9a1e-73d1b2a0c4f1", "email:alex@example.com", "phone:+442079460958"),
			ts:  testNow.Add(-10 * time.Millisecond), channel: "web", messageID: "2116ef8c-efc3-4ca4-851b-02ee60dad6ff",
		},
		{
			file: "rudder_identify.json", wantKind: Identify,
			ids: ids("user_id:u-9", "anonymous_id:fe5a8b0c-1234-4c9d-9a1e-73d1b2a0c4f1", "email:alex@example.com", "pos_card:778899"),
			ts:  testNow.Add(-2 * time.Second), channel: "mobile", deviceType: "android",
			messageID: "b8a1b5c3-4f7e-4d1a-9a38-54c1e5f2d001",
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			ev, err := Parse(readTestdata(t, tt.file), tt.kind, testOpts())
			if err != nil {
				t.Fatal(err)
			}
			if ev.Kind != tt.wantKind || ev.Event != tt.event || ev.Name != tt.name {
				t.Errorf("kind/event/name = %q/%q/%q, want %q/%q/%q", ev.Kind, ev.Event, ev.Name, tt.wantKind, tt.event, tt.name)
			}
			if !reflect.DeepEqual(ev.Identifiers, tt.ids) {
				t.Errorf("identifiers = %v, want %v", ev.Identifiers, tt.ids)
			}
			if !ev.Timestamp.Equal(tt.ts) {
				t.Errorf("timestamp = %v, want %v", ev.Timestamp, tt.ts)
			}
			if ev.Channel != tt.channel || ev.DeviceType != tt.deviceType {
				t.Errorf("channel/device = %q/%q, want %q/%q", ev.Channel, ev.DeviceType, tt.channel, tt.deviceType)
			}
			if ev.MessageID != tt.messageID {
				t.Errorf("messageId = %q, want %q", ev.MessageID, tt.messageID)
			}
			if ev.Context != nil {
				for _, k := range []string{"traits", "externalIds"} {
					if _, ok := ev.Context[k]; ok {
						t.Errorf("context still holds %q", k)
					}
				}
			}
			checkAccepted(t, ev, testOpts())
		})
	}
}

func TestParseDetails(t *testing.T) {
	ev, err := Parse(readTestdata(t, "segment_identify.json"), "", testOpts())
	if err != nil {
		t.Fatal(err)
	}
	// Top-level traits win over context.traits; others are merged; numbers
	// become int64/float64.
	want := map[string]any{"name": "Peter Gibbons", "email": "peter@example.com", "phone": "+1 (415) 555-2671",
		"plan": "premium", "logins": int64(5), "company": "Initech"}
	if !reflect.DeepEqual(ev.Traits, want) {
		t.Errorf("traits = %#v, want %#v", ev.Traits, want)
	}
	if ev.UserID != "97980" {
		t.Errorf("userId = %q", ev.UserID)
	}
	wantSent := time.Date(2015, 2, 23, 22, 28, 55, 387e6, time.UTC)
	if !ev.SentAt.Equal(wantSent) {
		t.Errorf("sentAt = %v, want %v", ev.SentAt, wantSent)
	}

	ev, err = Parse(readTestdata(t, "segment_track.json"), "", testOpts())
	if err != nil {
		t.Fatal(err)
	}
	if ev.Properties["revenue"] != int64(25) && ev.Properties["revenue"] != float64(25) {
		t.Errorf("revenue = %#v", ev.Properties["revenue"])
	}
	if ev.UserID != "u-1001" {
		t.Errorf("userId not trimmed: %q", ev.UserID)
	}
	prods, _ := ev.Properties["products"].([]any)
	if len(prods) != 1 || prods[0].(map[string]any)["quantity"] != int64(1) {
		t.Errorf("products = %#v", ev.Properties["products"])
	}

	ev, err = Parse(readTestdata(t, "segment_group.json"), "", testOpts())
	if err != nil {
		t.Fatal(err)
	}
	if ev.GroupID != "0" || ev.Traits["employees"] != int64(329) {
		t.Errorf("group = %q traits = %#v", ev.GroupID, ev.Traits)
	}
}

func TestParseTimes(t *testing.T) {
	tests := []struct {
		body string
		want time.Time
	}{
		{`"timestamp":"2020-05-06T07:08:09Z"`, time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)},
		{`"timestamp":"2020-05-06T07:08:09.123Z"`, time.Date(2020, 5, 6, 7, 8, 9, 123e6, time.UTC)},
		{`"timestamp":"2020-05-06T07:08:09.123456789+02:00"`, time.Date(2020, 5, 6, 5, 8, 9, 123456789, time.UTC)},
		{`"timestamp":"2020-05-06T07:08:09-0130"`, time.Date(2020, 5, 6, 8, 38, 9, 0, time.UTC)},
		{`"timestamp":"2020-05-06 07:08:09"`, time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)},
		{`"timestamp":1588748889`, time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)},
		{`"timestamp":1588748889123`, time.Date(2020, 5, 6, 7, 8, 9, 123e6, time.UTC)},
		// timestamp wins over everything.
		{`"timestamp":"2020-05-06T07:08:09Z","sentAt":"2021-01-01T00:00:10Z","originalTimestamp":"2021-01-01T00:00:00Z"`, time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)},
		// Clock-skew correction: Now − (sentAt − originalTimestamp).
		{`"sentAt":"2021-01-01T00:00:10Z","originalTimestamp":"2021-01-01T00:00:00Z"`, testNow.Add(-10 * time.Second)},
		{`"originalTimestamp":"2021-01-01T00:00:00Z"`, time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)},
		{`"sentAt":"2021-01-01T00:00:10Z"`, testNow},
		{`"receivedAt":"garbage"`, testNow},
		{`"timestamp":null`, testNow},
	}
	for _, tt := range tests {
		ev, err := Parse([]byte(`{"type":"track","event":"e","userId":"u",`+tt.body+`}`), "", testOpts())
		if err != nil {
			t.Errorf("%s: %v", tt.body, err)
			continue
		}
		if !ev.Timestamp.Equal(tt.want) || ev.Timestamp.Location() != time.UTC {
			t.Errorf("%s: timestamp = %v, want %v", tt.body, ev.Timestamp, tt.want)
		}
	}
}

func TestParseChannel(t *testing.T) {
	tests := []struct {
		body, channel, device string
	}{
		{`{"type":"page","userId":"u"}`, "web", ""},
		{`{"type":"screen","userId":"u"}`, "mobile", ""},
		{`{"type":"identify","userId":"u"}`, "server", ""},
		{`{"type":"track","event":"e","userId":"u","channel":"POS"}`, "pos", ""},
		{`{"type":"page","userId":"u","channel":"pos","context":{"channel":"Email"}}`, "email", ""},
		{`{"type":"page","userId":"u","context":{"device":{"type":" TV "}}}`, "web", "tv"},
		{`{"type":"page","userId":"u","context":{"device":"x"}}`, "web", ""},
	}
	for _, tt := range tests {
		ev, err := Parse([]byte(tt.body), "", testOpts())
		if err != nil {
			t.Errorf("%s: %v", tt.body, err)
			continue
		}
		if ev.Channel != tt.channel || ev.DeviceType != tt.device {
			t.Errorf("%s: channel/device = %q/%q, want %q/%q", tt.body, ev.Channel, ev.DeviceType, tt.channel, tt.device)
		}
	}
}

func TestParseIdentifiers(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		region string
		want   []Identifier
	}{
		{"numbers as ids", `{"userId":123456789012345678901234567890,"anonymousId":1.5}`, "",
			ids("user_id:123456789012345678901234567890", "anonymous_id:1.5")},
		{"context traits email when top-level has none", `{"userId":"u","traits":{"name":"x"},"context":{"traits":{"email":" A@B.C "}}}`, "",
			ids("user_id:u", "email:a@b.c")},
		{"bad email dropped, not the event", `{"userId":"u","traits":{"email":"a@@b"}}`, "", ids("user_id:u")},
		{"email without local part dropped", `{"userId":"u","traits":{"email":"@b"}}`, "", ids("user_id:u")},
		{"blocked values removed", `{"userId":"undefined","anonymousId":"a","traits":{"email":"TEST@test.com"}}`, "", ids("anonymous_id:a")},
		{"phone national with region", `{"userId":"u","traits":{"phone":"030 1234567"}}`, "DE", ids("user_id:u", "phone:+49301234567")},
		{"phone national without region kept as digits", `{"userId":"u","traits":{"phone":"030 1234567"}}`, "", ids("user_id:u", "phone:0301234567")},
		{"phone 00 prefix", `{"userId":"u","traits":{"phone":"0049 30 1234567"}}`, "", ids("user_id:u", "phone:+49301234567")},
		{"phone invalid keeps plus", `{"userId":"u","traits":{"phone":"+99 12"}}`, "", ids("user_id:u", "phone:+9912")},
		{"phone as number", `{"userId":"u","traits":{"phone":4915112345678}}`, "", ids("user_id:u", "phone:4915112345678")},
		{"phone without digits dropped", `{"userId":"u","traits":{"phone":"n/a"}}`, "", ids("user_id:u")},
		{"external ids merge with same type and dedupe", `{"userId":"u","context":{"externalIds":[{"id":"u","type":"USER_ID"},{"id":"X@Y.z","type":"email"},{"id":"d1","type":"device_id"},{"id":"d1","type":"device_id"}]}}`, "",
			ids("user_id:u", "email:x@y.z", "device_id:d1")},
		{"external id only", `{"context":{"externalIds":[{"id":" c-1 ","type":"crm_id","collection":"users","encoding":"none"}]}}`, "", ids("crm_id:c-1")},
		{"user and anonymous ids equal stay distinct types", `{"userId":"x","anonymousId":"x"}`, "", ids("user_id:x", "anonymous_id:x")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOpts()
			opts.DefaultRegion = tt.region
			ev, err := Parse([]byte(tt.body), Identify, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ev.Identifiers, tt.want) {
				t.Errorf("identifiers = %v, want %v", ev.Identifiers, tt.want)
			}
			checkAccepted(t, ev, opts)
		})
	}
}

func TestParseErrors(t *testing.T) {
	long := strings.Repeat("x", 257)
	tests := []struct {
		name  string
		kind  Kind
		body  string
		field string
	}{
		{"not json", "", `{"type":`, ""},
		{"array body", "", `[]`, ""},
		{"string body", Track, `"x"`, ""},
		{"trailing data", Track, `{"event":"e","userId":"u"} {}`, ""},
		{"missing type", "", `{"userId":"u"}`, "type"},
		{"unknown type", "", `{"type":"fly","userId":"u"}`, "type"},
		{"type not string", "", `{"type":1,"userId":"u"}`, "type"},
		{"type contradicts endpoint", Track, `{"type":"identify","userId":"u"}`, "type"},
		{"unknown endpoint kind", Kind("bogus"), `{"userId":"u"}`, "type"},
		{"track without event", Track, `{"userId":"u"}`, "event"},
		{"track blank event", Track, `{"userId":"u","event":"  "}`, "event"},
		{"track event not string", Track, `{"userId":"u","event":5}`, "event"},
		{"alias without previousId", Alias, `{"userId":"u"}`, "previousId"},
		{"alias without userId", Alias, `{"previousId":"p","anonymousId":"a"}`, "userId"},
		{"group without groupId", Group, `{"userId":"u"}`, "groupId"},
		{"traits not object", Identify, `{"userId":"u","traits":"x"}`, "traits"},
		{"properties not object", Track, `{"userId":"u","event":"e","properties":[]}`, "properties"},
		{"context not object", Track, `{"userId":"u","event":"e","context":"c"}`, "context"},
		{"context traits not object", Identify, `{"userId":"u","context":{"traits":1}}`, "context.traits"},
		{"bad timestamp", Track, `{"userId":"u","event":"e","timestamp":"yesterday"}`, "timestamp"},
		{"bad sentAt", Track, `{"userId":"u","event":"e","sentAt":"2020-13-01T00:00:00Z"}`, "sentAt"},
		{"bad originalTimestamp", Track, `{"userId":"u","event":"e","originalTimestamp":true}`, "originalTimestamp"},
		{"negative epoch", Track, `{"userId":"u","event":"e","timestamp":-5}`, "timestamp"},
		{"no identifier", Track, `{"event":"e"}`, "userId"},
		{"blank identifiers", Track, `{"event":"e","userId":"  ","anonymousId":""}`, "userId"},
		{"only blocked identifier", Track, `{"event":"e","userId":"undefined"}`, "userId"},
		{"only a bad email", Identify, `{"traits":{"email":"nope"}}`, "userId"},
		{"userId not scalar", Track, `{"event":"e","userId":true}`, "userId"},
		{"anonymousId object", Track, `{"event":"e","anonymousId":{}}`, "anonymousId"},
		{"userId too long", Track, `{"event":"e","userId":"` + long + `"}`, "userId"},
		{"email too long", Identify, `{"userId":"u","traits":{"email":"a@` + long + `"}}`, "traits.email"},
		{"messageId not string", Track, `{"event":"e","userId":"u","messageId":5}`, "messageId"},
		{"messageId too long", Track, `{"event":"e","userId":"u","messageId":"` + long + `"}`, "messageId"},
		{"externalIds not array", Track, `{"event":"e","userId":"u","context":{"externalIds":{}}}`, "context.externalIds"},
		{"externalId not object", Track, `{"event":"e","userId":"u","context":{"externalIds":["x"]}}`, "context.externalIds[0]"},
		{"externalId bad type", Track, `{"event":"e","userId":"u","context":{"externalIds":[{"id":"1","type":"ok"},{"id":"2","type":"bad-type"}]}}`, "context.externalIds[1].type"},
		{"externalId missing type", Track, `{"event":"e","userId":"u","context":{"externalIds":[{"id":"1"}]}}`, "context.externalIds[0].type"},
		{"externalId profile_id reserved", Track, `{"event":"e","userId":"u","context":{"externalIds":[{"id":"1","type":"profile_id"}]}}`, "context.externalIds[0].type"},
		{"externalId missing id", Track, `{"event":"e","userId":"u","context":{"externalIds":[{"type":"crm_id"}]}}`, "context.externalIds[0].id"},
		{"externalId id too long", Track, `{"event":"e","userId":"u","context":{"externalIds":[{"id":"` + long + `","type":"crm_id"}]}}`, "context.externalIds[0].id"},
		{"name not string", Page, `{"userId":"u","name":[]}`, "name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.body), tt.kind, testOpts())
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want *FieldError", err)
			}
			if fe.Field != tt.field {
				t.Errorf("field = %q (%s), want %q", fe.Field, fe.Reason, tt.field)
			}
			if fe.Reason == "" {
				t.Error("empty reason")
			}
		})
	}
}

func TestParseTooLarge(t *testing.T) {
	body := `{"type":"track","event":"e","userId":"u","properties":{"p":"` + strings.Repeat("x", 32<<10) + `"}}`
	_, err := Parse([]byte(body), "", testOpts())
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "" || !strings.Contains(fe.Reason, "32 KB") {
		t.Fatalf("err = %v, want a FieldError mentioning 32 KB", err)
	}
	opts := testOpts()
	opts.MaxEventBytes = 64 << 10
	if _, err := Parse([]byte(body), "", opts); err != nil {
		t.Fatalf("with a 64 KB limit: %v", err)
	}
}

func TestParseBatch(t *testing.T) {
	acc, rej, err := ParseBatch(readTestdata(t, "segment_batch.json"), testOpts())
	if err != nil {
		t.Fatal(err)
	}
	var gotIdx []int
	for _, a := range acc {
		gotIdx = append(gotIdx, a.Index)
		checkAccepted(t, a.Event, testOpts())
	}
	if !reflect.DeepEqual(gotIdx, []int{0, 1, 3}) {
		t.Fatalf("accepted indices = %v, want [0 1 3]", gotIdx)
	}
	wantRej := []Rejection{{Index: 2, Field: "event"}, {Index: 4, Field: ""}, {Index: 5, Field: "timestamp"}}
	if len(rej) != len(wantRej) {
		t.Fatalf("rejections = %+v", rej)
	}
	for i, r := range rej {
		if r.Index != wantRej[i].Index || r.Field != wantRej[i].Field || r.Reason == "" || len(r.Raw) == 0 {
			t.Errorf("rejection %d = %+v, want %+v", i, r, wantRej[i])
		}
	}
	// The batch context is merged under each event's context.
	ev := acc[2].Event
	lib := ev.Context["library"].(map[string]any)
	if lib["name"] != "analytics-node" || lib["version"] != "9.9" || ev.Context["ip"] != "10.0.0.1" || ev.DeviceType != "phone" {
		t.Errorf("merged context = %#v", ev.Context)
	}
	// The batch sentAt stands in for the events' sentAt.
	if want := time.Date(2012, 12, 2, 0, 31, 30, 0, time.UTC); !acc[0].Event.SentAt.Equal(want) {
		t.Errorf("sentAt = %v, want %v", acc[0].Event.SentAt, want)
	}
	// Events do not share the batch context's maps.
	acc[0].Event.Context["device"].(map[string]any)["type"] = "changed"
	if acc[1].Event.Context["device"].(map[string]any)["type"] != "phone" {
		t.Error("events share context maps")
	}
	// Rejections encode as the HTTP layer answers them.
	b, _ := json.Marshal(rej[0])
	if string(b) != `{"index":2,"field":"event","reason":"required for track"}` {
		t.Errorf("rejection JSON = %s", b)
	}
}

func TestParseBatchShape(t *testing.T) {
	for _, body := range []string{``, `not json`, `[]`, `{"foo":1}`, `{"batch":{}}`, `{"batch":null}`, `{"batch":[],"context":5}`, `{"batch":[],"sentAt":{}}`} {
		if _, _, err := ParseBatch([]byte(body), testOpts()); err == nil {
			t.Errorf("%q: no error", body)
		}
	}
	acc, rej, err := ParseBatch([]byte(`{"batch":[]}`), testOpts())
	if err != nil || len(acc) != 0 || len(rej) != 0 {
		t.Errorf("empty batch: %v %v %v", acc, rej, err)
	}
	// Per-event size limit inside a batch.
	big := `{"type":"track","event":"e","userId":"u","properties":{"p":"` + strings.Repeat("x", 32<<10) + `"}}`
	acc, rej, err = ParseBatch([]byte(`{"batch":[`+big+`,{"type":"identify","userId":"u"}]}`), testOpts())
	if err != nil || len(acc) != 1 || acc[0].Index != 1 || len(rej) != 1 || !strings.Contains(rej[0].Reason, "32 KB") {
		t.Errorf("big event in batch: %v %+v %v", acc, rej, err)
	}
}

func TestNormalizeIdentifier(t *testing.T) {
	tests := []struct {
		typ, in, region, want string
		ok                    bool
	}{
		{UserID, "  u1 ", "", "u1", true},
		{UserID, "   ", "", "", false},
		{"crm_id", "AbC", "", "AbC", true},
		{Email, " Foo.Bar@Example.COM ", "", "foo.bar@example.com", true},
		{Email, "foo", "", "", false},
		{Email, "a@b@c", "", "", false},
		{Email, "a@", "", "", false},
		{Phone, "+1 415-555-2671", "", "+14155552671", true},
		{Phone, "(415) 555-2671", "US", "+14155552671", true},
		{Phone, "(415) 555-2671", "", "4155552671", true},
		{Phone, "+1 000", "", "+1000", true},
		{Phone, "0044 20 7946 0958", "", "+442079460958", true},
		{Phone, "---", "", "", false},
	}
	for _, tt := range tests {
		got, ok := NormalizeIdentifier(tt.typ, tt.in, tt.region)
		if got != tt.want || ok != tt.ok {
			t.Errorf("NormalizeIdentifier(%q, %q, %q) = %q, %v; want %q, %v", tt.typ, tt.in, tt.region, got, ok, tt.want, tt.ok)
		}
		if ok {
			if again, _ := NormalizeIdentifier(tt.typ, got, tt.region); again != got {
				t.Errorf("not idempotent: %q → %q", got, again)
			}
		}
	}
}

func TestValidSourceName(t *testing.T) {
	for name, ok := range map[string]bool{
		"web": true, "pos-01": true, "0crm_export": true, strings.Repeat("a", 64): true,
		"": false, "Web": false, "-web": false, "_x": false, "a b": false, strings.Repeat("a", 65): false, "a.b": false,
	} {
		if err := ValidSourceName(name); (err == nil) != ok {
			t.Errorf("ValidSourceName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

// checkAccepted checks the invariants of every accepted event.
func checkAccepted(t testing.TB, ev Event, opts ParseOptions) {
	t.Helper()
	if !kinds[ev.Kind] {
		t.Fatalf("invalid kind %q", ev.Kind)
	}
	if ev.Kind == Track && strings.TrimSpace(ev.Event) == "" {
		t.Fatalf("track without event name")
	}
	strong := 0
	seen := map[string]bool{}
	for _, id := range ev.Identifiers {
		if !id.Weak {
			strong++
		}
		if n, ok := NormalizeIdentifier(id.Type, id.Value, opts.DefaultRegion); !ok || n != id.Value {
			t.Fatalf("identifier %v not normalised (→ %q, %v)", id, n, ok)
		}
		if !validIdentifierType(id.Type) || len(id.Value) > MaxIdentifierBytes {
			t.Fatalf("bad identifier %v", id)
		}
		if opts.Blocked != nil && opts.Blocked(id.Type, id.Value) {
			t.Fatalf("blocked identifier %v", id)
		}
		if seen[id.String()] {
			t.Fatalf("duplicate identifier %v", id)
		}
		seen[id.String()] = true
	}
	if strong == 0 {
		t.Fatalf("no non-weak identifier: %v", ev.Identifiers)
	}
	if ev.Timestamp.IsZero() || ev.Channel == "" {
		t.Fatalf("timestamp %v channel %q", ev.Timestamp, ev.Channel)
	}
	if len(ev.MessageID) > MaxIdentifierBytes {
		t.Fatalf("messageId too long")
	}
	if ev.Consent != nil && len(ev.Consent) == 0 {
		t.Fatalf("empty, non-nil consent")
	}
	for c := range ev.Consent {
		if !ValidConsentChannel(c) {
			t.Fatalf("consent for unknown channel %q", c)
		}
	}
	for _, m := range []map[string]any{ev.Traits, ev.Properties, ev.Context} {
		if _, err := json.Marshal(m); err != nil {
			t.Fatalf("maps do not encode: %v", err)
		}
	}
}
