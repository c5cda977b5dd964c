package connectortest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/activation"
	"github.com/aurumcdp/aurum/activation/connector"
)

// Example is the change every connector's recorded request shows: Jane
// entering audience vip.
var Example = connector.Change{
	ID: "aud:vip:01JD8Z5X4N6Q2W3E4R5T6Y7U8I:42:0", Op: connector.Add, Audience: "vip",
	ProfileID: "01JD8Z5X4N6Q2W3E4R5T6Y7U8I", Emails: []string{"jane@example.com"}, Phones: []string{"+4520000001"},
	Traits: map[string]any{"first_name": "Jane"},
}

// ExampleTime is the clock of the recorded requests.
var ExampleTime = time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)

// docHeaders are the request headers a recorded request shows.
var docHeaders = []string{"Authorization", "Content-Type", "developer-token"}

// Record runs the kind's connector (config against the fake at its URL)
// on Example and returns its first request as text: the request line,
// docHeaders, and the body (JSON indented).
func Record(t *testing.T, kind string, fake http.Handler, config func(url string) json.RawMessage) string {
	t.Helper()
	return RecordNth(t, kind, fake, config, 1)
}

// RecordNth is Record of the connector's nth request (1: the first).
func RecordNth(t *testing.T, kind string, fake http.Handler, config func(url string) json.RawMessage, nth int) string {
	t.Helper()
	var mu sync.Mutex
	var first string
	seen := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		if seen++; seen == nth {
			first = formatRequest(r, body)
		}
		mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		fake.ServeHTTP(w, r)
	}))
	defer srv.Close()
	k := activation.Kinds()[kind]
	c, err := k.New(config(srv.URL), connector.Env{Destination: "doc", Client: srv.Client(), Now: func() time.Time { return ExampleTime }})
	if err != nil {
		t.Fatal(err)
	}
	res := c.Deliver(context.Background(), []connector.Change{Example})
	if res[0].Status != connector.Delivered {
		t.Fatalf("%s: example not delivered: %+v", kind, res[0])
	}
	mu.Lock()
	defer mu.Unlock()
	return first
}

func formatRequest(r *http.Request, body []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", r.Method, r.URL.RequestURI())
	for _, h := range docHeaders {
		if v := r.Header.Get(h); v != "" {
			fmt.Fprintf(&b, "%s: %s\n", h, v)
		}
	}
	if len(body) == 0 {
		return b.String()
	}
	b.WriteString("\n")
	form, err := url.ParseQuery(string(body))
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") && err == nil {
		// One field a line, decoded (a JSON value indented), for reading.
		for _, k := range slices.Sorted(maps.Keys(form)) {
			for _, v := range form[k] {
				var out bytes.Buffer
				if json.Indent(&out, []byte(v), "", "  ") == nil && strings.HasPrefix(v, "{") {
					v = out.String()
				}
				fmt.Fprintf(&b, "%s=%s\n", k, v)
			}
		}
		return b.String()
	}
	var out bytes.Buffer
	if json.Indent(&out, body, "", "  ") == nil {
		b.Write(out.Bytes())
	} else {
		b.Write(body)
	}
	b.WriteString("\n")
	return b.String()
}

// CheckDoc compares got with the block of docs/connectors.md that follows
// the line "<!-- recorded: <kind> -->" (a fenced block).
func CheckDoc(t *testing.T, kind, got string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "docs", "connectors.md")
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(doc), "\n")
	i := slices.Index(lines, "<!-- recorded: "+kind+" -->")
	if i < 0 || i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "```") {
		t.Fatalf("docs/connectors.md has no recorded request of %s (a fenced block after \"<!-- recorded: %s -->\"); it is:\n%s", kind, kind, got)
	}
	var want []string
	for _, l := range lines[i+2:] {
		if strings.HasPrefix(l, "```") {
			break
		}
		want = append(want, l)
	}
	if w := strings.Join(want, "\n") + "\n"; w != got {
		t.Fatalf("docs/connectors.md's recorded request of %s differs from what the connector sends:\n--- doc\n%s--- sent\n%s", kind, w, got)
	}
}
