package event

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

var fuzzKinds = []Kind{"", Track, Identify, Page, Screen, Group, Alias}

func seedTestdata(f *testing.F, add func(b []byte)) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no testdata: %v", err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		add(b)
	}
}

func fuzzOpts(region uint8) ParseOptions {
	opts := testOpts()
	if region%2 == 1 {
		opts.DefaultRegion = "US"
	}
	opts.MaxEventBytes = 8 << 10
	return opts
}

func FuzzParse(f *testing.F) {
	seedTestdata(f, func(b []byte) { f.Add(b, uint8(0), uint8(0)) })
	f.Add([]byte(`{"type":"identify","traits":{"phone":"(415) 555-2671"}}`), uint8(2), uint8(1))
	f.Add([]byte(`{"userId":1e400,"event":"x","timestamp":1e300}`), uint8(1), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, k, region uint8) {
		kind := fuzzKinds[int(k)%len(fuzzKinds)]
		opts := fuzzOpts(region)
		ev, err := Parse(data, kind, opts)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			return
		}
		if kind != "" && ev.Kind != kind {
			t.Fatalf("kind %q from endpoint %q", ev.Kind, kind)
		}
		checkAccepted(t, ev, opts)
	})
}

func FuzzParseBatch(f *testing.F) {
	seedTestdata(f, func(b []byte) {
		f.Add(b, uint8(0))
		f.Add(append(append([]byte(`{"batch":[`), b...), `],"context":{"channel":"pos"}}`...), uint8(1))
	})
	f.Fuzz(func(t *testing.T, data []byte, region uint8) {
		opts := fuzzOpts(region)
		acc, rej, err := ParseBatch(data, opts)
		if err != nil {
			if len(acc) != 0 || len(rej) != 0 {
				t.Fatal("results with a batch error")
			}
			return
		}
		last := -1
		for _, a := range acc {
			if a.Index <= last {
				t.Fatalf("indices out of order")
			}
			last = a.Index
			checkAccepted(t, a.Event, opts)
		}
		for _, r := range rej {
			if r.Reason == "" {
				t.Fatalf("rejection without reason: %+v", r)
			}
		}
	})
}
