package importer

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/event"
)

// readAll reads every row; fatal is the error that ended the stream (nil at
// io.EOF).
func readAll(t testing.TB, r *Reader, limit int) (rows []Row, fatal error) {
	t.Helper()
	for i := 0; limit <= 0 || i < limit; i++ {
		row, err := r.Next()
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return rows, err
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func open(t *testing.T, name string, f Format, m Mapping, source string) *Reader {
	t.Helper()
	file, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { file.Close() })
	r, err := NewReader(file, f, m, source)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// parse runs an imported message through the ingest validation.
func parse(t testing.TB, msg map[string]any) event.Event {
	t.Helper()
	data, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := event.Parse(data, "", event.ParseOptions{Now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatalf("event.Parse(%s): %v", data, err)
	}
	return ev
}

type wantRow struct {
	line int
	err  string         // substring of the error; "" for a good row
	has  map[string]any // top-level keys the message must hold
}

func checkRows(t *testing.T, rows []Row, want []wantRow) {
	t.Helper()
	if len(rows) != len(want) {
		for _, r := range rows {
			t.Logf("row %d: %v %v", r.Line, r.Message, r.Err)
		}
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	for i, w := range want {
		r := rows[i]
		if r.Line != w.line {
			t.Errorf("row %d: line %d, want %d", i, r.Line, w.line)
		}
		if w.err != "" {
			if r.Err == nil || !strings.Contains(r.Err.Error(), w.err) || r.Message != nil {
				t.Errorf("row %d: err %v (message %v), want error containing %q", i, r.Err, r.Message, w.err)
			}
			continue
		}
		if r.Err != nil {
			t.Errorf("row %d: %v", i, r.Err)
			continue
		}
		if id, _ := r.Message["messageId"].(string); id == "" {
			t.Errorf("row %d: no messageId", i)
		}
		for k, v := range w.has {
			if got := r.Message[k]; !reflect.DeepEqual(got, v) {
				t.Errorf("row %d: %s = %#v, want %#v", i, k, got, v)
			}
		}
		parse(t, r.Message)
	}
}

func TestCSV(t *testing.T) {
	m, err := LoadMapping(filepath.Join("testdata", "crm_mapping.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rows, fatal := readAll(t, open(t, "crm.csv", CSV, m, "crm"), 0)
	if fatal != nil {
		t.Fatal(fatal)
	}
	checkRows(t, rows, []wantRow{
		{line: 2, has: map[string]any{
			"type": "track", "event": "Order Completed", "timestamp": "2024-01-02T10:00:00Z",
			"traits":     map[string]any{"firstName": "Ann", "email": "Ann@Example.com"},
			"properties": map[string]any{"total": json.Number("10.50"), "order_id": "o-1"},
			"context":    map[string]any{"externalIds": []any{map[string]any{"id": "c1", "type": "crm_id", "collection": "users", "encoding": "none"}}},
		}},
		{line: 3, has: map[string]any{
			"traits":     map[string]any{"firstName": `Bob "The Builder"`, "email": "bob@example.com"},
			"properties": map[string]any{"total": "007", "order_id": "o-2"},
		}},
		{line: 4, err: `bare "`},
		{line: 5, err: "5 fields, header has 6"},
		{line: 6, err: `bad timestamp "yesterday"`},
		{line: 7, has: map[string]any{"timestamp": "2024-01-06T00:00:00Z", "traits": map[string]any{"firstName": "Fay\nMulti", "email": "fay@example.com"}}},
		{line: 9},
	})
	// Identical rows get the same hash and consecutive counters.
	first, dup := rows[0].Message["messageId"].(string), rows[6].Message["messageId"].(string)
	if !strings.HasPrefix(first, "imp-") || !strings.HasSuffix(first, "-0") || dup != strings.TrimSuffix(first, "-0")+"-1" {
		t.Errorf("ids %q and %q", first, dup)
	}
	if len(first) != len("imp-")+32+2 {
		t.Errorf("id %q has the wrong length", first)
	}
}

func TestCSVVariants(t *testing.T) {
	tests := []struct {
		name string
		m    Mapping
		data string
		want []wantRow
	}{
		{
			name: "tsv identify with user and anonymous ids",
			m:    Mapping{Comma: `\t`, Identifiers: map[string]string{"uid": "user_id", "anon": "anonymous_id", "tel": "Phone"}, Traits: map[string]string{"plan": "plan"}},
			data: "uid\tanon\ttel\tplan\nu1\ta1\t+1 415 555 2671\tgold\n\ta2\t\t\n",
			want: []wantRow{
				{line: 2, has: map[string]any{"type": "identify", "userId": "u1", "anonymousId": "a1", "traits": map[string]any{"plan": "gold", "phone": "+1 415 555 2671"}}},
				{line: 3, has: map[string]any{"type": "identify", "anonymousId": "a2", "traits": nil}},
			},
		},
		{
			name: "event column, unix seconds, message id column, BOM",
			m:    Mapping{Identifiers: map[string]string{"id": "user_id"}, EventColumn: "what", Timestamp: "t", TimeLayout: "unix", MessageID: "mid"},
			data: "\uFEFFid,what,t,mid\nu1,Viewed,1700000000,m1\nu1,Viewed,17e8,\nu1,Viewed,1700000000,\n",
			want: []wantRow{
				{line: 2, has: map[string]any{"event": "Viewed", "timestamp": "2023-11-14T22:13:20Z", "messageId": "m1"}},
				{line: 3, err: "bad timestamp"},
				{line: 4, has: map[string]any{"event": "Viewed"}},
			},
		},
		{
			name: "custom layout and empty timestamp",
			m:    Mapping{Identifiers: map[string]string{"id": "user_id"}, Event: "Visit", Timestamp: "t", TimeLayout: "02/01/2006 15:04"},
			data: "id,t\nu1,31/12/2023 23:59\nu2,\nu3,\"a,\"b\nu4,01/01/2024 00:00\n",
			want: []wantRow{
				{line: 2, has: map[string]any{"timestamp": "2023-12-31T23:59:00Z"}},
				{line: 3, err: "empty timestamp"},
				{line: 4, err: `extraneous or missing " in quoted-field`},
				{line: 5, has: map[string]any{"timestamp": "2024-01-01T00:00:00Z"}},
			},
		},
		{
			name: "whitespace separated with CRLF and blank lines",
			m:    Mapping{Comma: "ws", Identifiers: map[string]string{"customer_id": "crm_id"}, Properties: map[string]string{"dollar_value": "revenue"}, Event: "Order Completed", Timestamp: "date", TimeLayout: "20060102"},
			data: " customer_id  date  dollar_value\r\n 00001 19970101   11.77\r\n\r\n 00002 19970112\r\n 00003 19970113 -3\r\n",
			want: []wantRow{
				{line: 2, has: map[string]any{"properties": map[string]any{"revenue": json.Number("11.77")}, "timestamp": "1997-01-01T00:00:00Z"}},
				{line: 4, err: "2 fields, header has 3"},
				{line: 5, has: map[string]any{"properties": map[string]any{"revenue": json.Number("-3")}}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewReader(strings.NewReader(tt.data), CSV, tt.m, "src")
			if err != nil {
				t.Fatal(err)
			}
			rows, fatal := readAll(t, r, 0)
			if fatal != nil {
				t.Fatal(fatal)
			}
			checkRows(t, rows, tt.want)
		})
	}
}

func TestNDJSON(t *testing.T) {
	rows, fatal := readAll(t, open(t, "events.ndjson", NDJSON, Mapping{}, "app"), 0)
	if fatal != nil {
		t.Fatal(fatal)
	}
	checkRows(t, rows, []wantRow{
		{line: 1, has: map[string]any{"event": "Signed Up"}},
		{line: 3, has: map[string]any{"messageId": "m-2"}},
		{line: 4, err: "invalid JSON"},
		{line: 5, err: "not a JSON object"},
		{line: 6, has: map[string]any{"event": "Signed Up"}},
	})
	a, b := rows[0].Message["messageId"].(string), rows[4].Message["messageId"].(string)
	if !strings.HasSuffix(a, "-0") || b != strings.TrimSuffix(a, "-0")+"-1" {
		t.Errorf("ids %q, %q", a, b)
	}
}

func TestNDJSONLongLine(t *testing.T) {
	data := `{"type":"identify","userId":"u1"}` + "\n" + `{"type":"identify","userId":"` + strings.Repeat("x", MaxRecordBytes) + `"}` + "\n" + `{"type":"identify","userId":"u3"}`
	r, err := NewReader(strings.NewReader(data), NDJSON, Mapping{}, "app")
	if err != nil {
		t.Fatal(err)
	}
	rows, fatal := readAll(t, r, 0)
	if fatal != nil {
		t.Fatal(fatal)
	}
	checkRows(t, rows, []wantRow{
		{line: 1, has: map[string]any{"userId": "u1"}},
		{line: 2, err: "longer than 1 MB"},
		{line: 3, has: map[string]any{"userId": "u3"}},
	})
}

func TestJSON(t *testing.T) {
	rows, fatal := readAll(t, open(t, "events.json", JSON, Mapping{}, "app"), 0)
	if fatal != nil {
		t.Fatal(fatal)
	}
	checkRows(t, rows, []wantRow{
		{line: 1, has: map[string]any{"properties": map[string]any{"n": json.Number("12345678901234567890")}}},
		{line: 2, err: "not a JSON object"},
		{line: 3, has: map[string]any{"userId": "u2"}},
	})

	rows, fatal = readAll(t, open(t, "batch.json", JSON, Mapping{}, "app"), 0)
	if fatal != nil {
		t.Fatal(fatal)
	}
	checkRows(t, rows, []wantRow{
		{line: 1, has: map[string]any{"event": "A"}},
		{line: 2, err: "not a JSON object"},
		{line: 3, has: map[string]any{"name": "Home"}},
	})
}

func TestFatal(t *testing.T) {
	tests := []struct {
		name string
		f    Format
		data string
		good int // good rows before the fatal error
	}{
		{"json truncated", JSON, `[{"type":"identify","userId":"u1"}, {"type":`, 1},
		{"json syntax", JSON, `[{"type":"identify","userId":"u1"} {"a":1}]`, 1},
		{"xml truncated", XML, `<events><event type="identify"><userId>u1</userId></event><event type="x"><userId>`, 1},
		{"xml mismatched tag", XML, `<events><event type="identify"><userId>u1</userId></event><event></evnt></events>`, 1},
		{"json record too large", JSON, `[{"type":"identify","userId":"u1"},{"p":"` + strings.Repeat("x", 3*MaxRecordBytes) + `"}]`, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewReader(strings.NewReader(tt.data), tt.f, Mapping{}, "s")
			if err != nil {
				t.Fatal(err)
			}
			rows, fatal := readAll(t, r, 0)
			if fatal == nil || fatal == io.EOF {
				t.Fatalf("no fatal error after %d rows", len(rows))
			}
			if len(rows) != tt.good || rows[0].Err != nil {
				t.Fatalf("rows before the error: %+v", rows)
			}
		})
	}
	_, fatal := readAll(t, mustReader(t, `[{"p":"`+strings.Repeat("x", 3*MaxRecordBytes)+`"}]`, JSON), 0)
	if !errors.Is(fatal, ErrRecordTooLarge) {
		t.Errorf("fatal = %v, want ErrRecordTooLarge", fatal)
	}
}

func mustReader(t *testing.T, data string, f Format) *Reader {
	t.Helper()
	r, err := NewReader(strings.NewReader(data), f, Mapping{}, "s")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNewReaderErrors(t *testing.T) {
	m := Mapping{Identifiers: map[string]string{"id": "user_id"}}
	tests := []struct {
		name string
		f    Format
		m    Mapping
		data string
		want string
	}{
		{"unknown format", "yaml", m, "", "unknown format"},
		{"empty csv", CSV, m, "", "header"},
		{"json scalar", JSON, m, `5`, "want an array"},
		{"json object without batch", JSON, m, `{"a":[1]}`, `no "batch"`},
		{"json batch not array", JSON, m, `{"batch":{}}`, "not an array"},
		{"xml wrong root", XML, m, `<rows/>`, "want <events>"},
		{"xml empty", XML, m, ``, "EOF"},
		{"csv mapping column missing", CSV, Mapping{Identifiers: map[string]string{"email_address": "email"}}, "id,email\n", `"email_address"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewReader(strings.NewReader(tt.data), tt.f, tt.m, "s")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestXML(t *testing.T) {
	rows, fatal := readAll(t, open(t, "events.xml", XML, Mapping{}, "pos"), 0)
	if fatal != nil {
		t.Fatal(fatal)
	}
	checkRows(t, rows, []wantRow{
		{line: 3, has: map[string]any{
			"type": "track", "userId": "u1", "event": "Order Completed", "timestamp": "2024-01-02T10:00:00Z",
			"properties": map[string]any{"revenue": json.Number("10.5"), "sku": "007", "items": map[string]any{"item": []any{"a", "b"}}},
			"context": map[string]any{
				"externalIds": []any{map[string]any{"id": "L1", "type": "loyalty_id", "collection": "users", "encoding": "none"}},
				"device":      map[string]any{"type": "pos"},
			},
		}},
		{line: 10, err: "unknown element <bogus>"},
		{line: 11, err: "without type"},
		{line: 12, err: "unexpected element <foo>"},
		{line: 13, has: map[string]any{"traits": map[string]any{"email": "d@e.f", "age": "42"}}},
	})
	ev := parse(t, rows[0].Message)
	if len(ev.Identifiers) != 2 || ev.Identifiers[1].Type != "loyalty_id" || ev.DeviceType != "pos" {
		t.Errorf("parsed event: %+v", ev)
	}
}

func TestXMLMalformedEvents(t *testing.T) {
	for _, body := range []string{
		`<event type="fly"><userId>u</userId></event>`,
		`<event type="track"><userId><b>u</b></userId></event>`,
		`<event type="track"><userId>u</userId><userId>v</userId></event>`,
		`<event type="track"><context><externalIds><externalId>L</externalId></externalIds></context></event>`,
		`<event type="track"><context><externalIds><id type="x">L</id></externalIds></context></event>`,
		`<event type="track"><context><externalIds/><externalIds/></context></event>`,
	} {
		r := mustReader(t, `<events>`+body+`<event type="identify"><userId>ok</userId></event></events>`, XML)
		rows, fatal := readAll(t, r, 0)
		if fatal != nil || len(rows) != 2 || rows[0].Err == nil || rows[1].Err != nil {
			t.Errorf("%s: rows %+v, fatal %v", body, rows, fatal)
		}
	}
}

func TestDeterministicIDs(t *testing.T) {
	m, err := LoadMapping(filepath.Join("testdata", "crm_mapping.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ids := func(data, source string) []string {
		r, err := NewReader(strings.NewReader(data), CSV, m, source)
		if err != nil {
			t.Fatal(err)
		}
		rows, fatal := readAll(t, r, 0)
		if fatal != nil {
			t.Fatal(fatal)
		}
		var out []string
		for _, row := range rows {
			if row.Err == nil {
				out = append(out, row.Message["messageId"].(string))
			}
		}
		return out
	}
	data, err := os.ReadFile(filepath.Join("testdata", "crm.csv"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := ids(string(data), "crm"), ids(string(data), "crm")
	if len(a) != 4 || !reflect.DeepEqual(a, b) {
		t.Fatalf("two reads differ: %v vs %v", a, b)
	}
	// A grown export keeps the ids of its old rows and adds new ones.
	grown := ids(string(data)+"c1,Ann@Example.com,Ann,10.50,2024-01-02 10:00:00,o-1\nc9,z@z.z,Zed,1,2024-02-01,o-9\n", "crm")
	if len(grown) != 6 || !reflect.DeepEqual(grown[:4], a) {
		t.Fatalf("grown file: %v, old %v", grown, a)
	}
	seen := map[string]bool{}
	for _, id := range grown {
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
	}
	// The source enters the id.
	if other := ids(string(data), "crm2"); other[0] == a[0] {
		t.Error("source does not change the id")
	}
}

func TestMapping(t *testing.T) {
	header := []string{"id", "mail", "when", "amount", "kind"}
	ok := Mapping{Identifiers: map[string]string{"id": "crm_id", "mail": "email"}, Properties: map[string]string{"amount": "revenue"}, EventColumn: "kind", Timestamp: "when"}
	if err := ok.Validate(header); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(m *Mapping)
		want string
	}{
		{"unknown identifier column", func(m *Mapping) { m.Identifiers["phone_no"] = "phone" }, `"phone_no"`},
		{"unknown trait column", func(m *Mapping) { m.Traits = map[string]string{"fname": "firstName"} }, `"fname"`},
		{"unknown property column", func(m *Mapping) { m.Properties["qty"] = "quantity" }, `"qty"`},
		{"unknown event column", func(m *Mapping) { m.EventColumn = "type" }, `"type"`},
		{"unknown timestamp column", func(m *Mapping) { m.Timestamp = "ts" }, `"ts"`},
		{"unknown message id column", func(m *Mapping) { m.MessageID = "msg" }, `"msg"`},
		{"event and event column", func(m *Mapping) { m.Event = "X" }, "exclusive"},
		{"no identifiers", func(m *Mapping) { m.Identifiers = nil }, "no identifier"},
		{"bad identifier type", func(m *Mapping) { m.Identifiers["id"] = "crm-id" }, "invalid identifier type"},
		{"profile_id reserved", func(m *Mapping) { m.Identifiers["id"] = "profile_id" }, "invalid identifier type"},
		{"empty property name", func(m *Mapping) { m.Properties["amount"] = " " }, "empty property name"},
		{"bad comma", func(m *Mapping) { m.Comma = "ab" }, "invalid comma"},
		{"quote comma", func(m *Mapping) { m.Comma = `"` }, "invalid comma"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := ok
			m.Identifiers = map[string]string{"id": "crm_id", "mail": "email"}
			m.Properties = map[string]string{"amount": "revenue"}
			tt.edit(&m)
			if err := m.Validate(header); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestLoadMapping(t *testing.T) {
	m, err := LoadMapping(filepath.Join("testdata", "crm_mapping.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := Mapping{
		Identifiers: map[string]string{"customer_id": "crm_id", "email": "email"},
		Traits:      map[string]string{"first_name": "firstName"},
		Properties:  map[string]string{"order_total": "total", "order_id": "order_id"},
		Event:       "Order Completed", Timestamp: "ordered_at",
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("mapping = %+v, want %+v", m, want)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("identifiers: {a: b}\nevnt: X\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadMapping(bad); err == nil || !strings.Contains(err.Error(), "evnt") {
		t.Errorf("unknown key: err = %v", err)
	}
	if _, err := LoadMapping(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("missing file: no error")
	}
}

func TestParsePairs(t *testing.T) {
	got, err := ParsePairs(" id = crm_id ,mail=email,")
	if err != nil || !reflect.DeepEqual(got, map[string]string{"id": "crm_id", "mail": "email"}) {
		t.Errorf("ParsePairs = %v, %v", got, err)
	}
	for _, bad := range []string{"id", "=x", "id="} {
		if _, err := ParsePairs(bad); err == nil {
			t.Errorf("ParsePairs(%q): no error", bad)
		}
	}
}

// sharedData locates ../shared relative to the repository root.
func sharedData(t *testing.T, rel string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("skipping: repository root (go.mod) not found")
		}
		dir = parent
	}
	p := filepath.Join(dir, "..", "shared", rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("skipping: shared data set %s is absent (../shared next to the repository)", p)
	}
	return p
}

func TestRealData(t *testing.T) {
	tests := []struct {
		name  string
		path  string
		m     Mapping
		event string // expected event name; "" = any
		rows  int    // rows read: the first 2000, or all of a smaller file
	}{
		{
			name: "otto", path: "data/otto_sample/train_sample_events.csv",
			// The sample holds 862 events; a session is one user.
			m: Mapping{Identifiers: map[string]string{"session": "user_id"}, Properties: map[string]string{"aid": "aid"},
				EventColumn: "type", Timestamp: "ts_ms", TimeLayout: "unix_ms"},
			rows: 862,
		},
		{
			name: "cdnow", path: "data/cdnow/CDNOW_master.txt",
			m: Mapping{Comma: "ws", Identifiers: map[string]string{"customer_id": "crm_id"},
				Properties: map[string]string{"number_of_cds": "cds", "dollar_value": "revenue"},
				Event:      "Order Completed", Timestamp: "date", TimeLayout: "20060102"},
			event: "Order Completed", rows: 2000,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := os.Open(sharedData(t, tt.path))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r, err := NewReader(f, CSV, tt.m, tt.name)
			if err != nil {
				t.Fatal(err)
			}
			rows, fatal := readAll(t, r, 2000)
			if fatal != nil {
				t.Fatal(fatal)
			}
			if len(rows) != tt.rows {
				t.Fatalf("%d rows, want %d", len(rows), tt.rows)
			}
			ids := map[string]bool{}
			for _, row := range rows {
				if row.Err != nil {
					t.Fatalf("line %d: %v", row.Line, row.Err)
				}
				ev := parse(t, row.Message)
				if ev.Kind != event.Track || (tt.event != "" && ev.Event != tt.event) {
					t.Fatalf("line %d: kind %q event %q", row.Line, ev.Kind, ev.Event)
				}
				if ev.Timestamp.Year() < 1990 || ev.Timestamp.Year() > 2030 {
					t.Fatalf("line %d: time %v", row.Line, ev.Timestamp)
				}
				id := row.Message["messageId"].(string)
				if ids[id] {
					t.Fatalf("line %d: duplicate id %q", row.Line, id)
				}
				ids[id] = true
			}
		})
	}
}

// TestNumericPropertyWarnings: a revenue or total that is not a number
// (revenue=abc: kept, but ignored as revenue without a word before) gives
// the row a warning naming the property; numbers, numeric strings and
// other properties do not.
func TestNumericPropertyWarnings(t *testing.T) {
	csv := "id,amount,total,note\nu1,abc,12,x\nu2,42.5,,y\nu3,7,n/a,z\n"
	m := Mapping{Identifiers: map[string]string{"id": "user_id"}, Event: "Order Completed",
		Properties: map[string]string{"amount": "revenue", "total": "total", "note": "note"}}
	rd, err := NewReader(strings.NewReader(csv), CSV, m, "pos")
	if err != nil {
		t.Fatal(err)
	}
	want := map[int][]string{2: {`properties.revenue is "abc", not a number`}, 3: nil, 4: {`properties.total is "n/a", not a number`}}
	for range 3 {
		row, err := rd.Next()
		if err != nil || row.Err != nil {
			t.Fatalf("row: %v %v", err, row.Err)
		}
		w := want[row.Line]
		if len(row.Warnings) != len(w) {
			t.Fatalf("line %d: warnings %q, want %q", row.Line, row.Warnings, w)
		}
		for i := range w {
			if !strings.HasPrefix(row.Warnings[i], w[i]) {
				t.Errorf("line %d: warning %q, want %q...", row.Line, row.Warnings[i], w[i])
			}
		}
	}
	rd, err = NewReader(strings.NewReader(`{"type":"track","userId":"u","event":"E","properties":{"revenue":{"amount":3},"total":"9.5"}}`+"\n"), NDJSON, Mapping{}, "web")
	if err != nil {
		t.Fatal(err)
	}
	row, err := rd.Next()
	if err != nil || len(row.Warnings) != 1 || !strings.Contains(row.Warnings[0], `revenue is {"amount":3}`) {
		t.Fatalf("an object as revenue: %v, warnings %q", err, row.Warnings)
	}
}
