package importer

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// fuzzRead reads at most 1000 rows and checks the row invariants: a good
// row has a message with a non-empty messageId; a bad row has none.
func fuzzRead(t *testing.T, data []byte, f Format, m Mapping) {
	r, err := NewReader(bytes.NewReader(data), f, m, "fuzz")
	if err != nil {
		return
	}
	for i := 0; i < 1000; i++ {
		row, err := r.Next()
		if err != nil {
			if err == io.EOF {
				if _, again := r.Next(); again != io.EOF {
					t.Fatalf("Next after EOF: %v", again)
				}
			}
			return
		}
		if row.Err != nil {
			if row.Message != nil {
				t.Fatalf("row %d: error %v with a message", row.Line, row.Err)
			}
			continue
		}
		if row.Message == nil {
			t.Fatalf("row %d: no message and no error", row.Line)
		}
		if id, ok := row.Message["messageId"]; !ok || id == nil || id == "" {
			t.Fatalf("row %d: no messageId: %v", row.Line, row.Message)
		}
	}
}

func addFile(f *testing.F, name string, extra ...any) {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(append([]any{b}, extra...)...)
}

var fuzzMapping = Mapping{
	Identifiers: map[string]string{"customer_id": "crm_id", "email": "email"},
	Traits:      map[string]string{"first_name": "firstName"},
	Properties:  map[string]string{"order_total": "total", "order_id": "order_id"},
	EventColumn: "ordered_at", // any column will do as the event name
	Timestamp:   "ordered_at",
}

func FuzzCSV(f *testing.F) {
	addFile(f, "crm.csv", false)
	f.Add([]byte("customer_id email first_name order_total ordered_at order_id\n1 a@b 2 3 20240101 4\n"), true)
	f.Fuzz(func(t *testing.T, data []byte, ws bool) {
		m := fuzzMapping
		if ws {
			m.Comma = "ws"
		}
		fuzzRead(t, data, CSV, m)
	})
}

func FuzzNDJSON(f *testing.F) {
	addFile(f, "events.ndjson")
	f.Fuzz(func(t *testing.T, data []byte) { fuzzRead(t, data, NDJSON, Mapping{}) })
}

func FuzzJSON(f *testing.F) {
	addFile(f, "events.json")
	addFile(f, "batch.json")
	f.Fuzz(func(t *testing.T, data []byte) { fuzzRead(t, data, JSON, Mapping{}) })
}

func FuzzXML(f *testing.F) {
	addFile(f, "events.xml")
	f.Fuzz(func(t *testing.T, data []byte) { fuzzRead(t, data, XML, Mapping{}) })
}
