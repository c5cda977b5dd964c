package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/store"
)

// actLog opens a log on an embedded server with AURUM_ACTIVATION.
func actLog(t *testing.T) *alog.Log {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := alog.Open(ctx, alog.Options{Dir: t.TempDir(), Listen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	if err := l.EnsureActivationStream(ctx); err != nil {
		t.Fatal(err)
	}
	return l
}

func actDB(t *testing.T, dir string) *store.DB {
	t.Helper()
	db, err := store.Open(dir, keysStoreOptions(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// mirror opens the cluster activation store on db and runs its follower
// until the test ends.
func mirror(t *testing.T, l *alog.Log, db *store.DB) *clusterRefs {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r, err := openClusterRefs(ctx, ctx, db, l, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return r
}

func catchUp(t *testing.T, r *clusterRefs) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
}

// dump is every key and value rw's Scan gives over the whole key space, in
// order.
func dump(t *testing.T, rw store.Reader) string {
	t.Helper()
	var out []string
	if err := rw.Scan(nil, nil, false, func(k, v []byte) bool {
		out = append(out, fmt.Sprintf("%q=%q", k, v))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, " ")
}

// TestClusterRefsScan: the cluster's activation store reads like the
// single node's: the same writes give the same Get and Scan answers (by
// prefix, by range, as the consent sweep pages, in both orders), on the
// node that wrote and on a node that only followed; the mirror's own
// bookkeeping never shows.
func TestClusterRefsScan(t *testing.T) {
	l := actLog(t)
	single := refStore{actDB(t, t.TempDir())}
	writer := mirror(t, l, actDB(t, t.TempDir()))
	other := mirror(t, l, actDB(t, t.TempDir()))
	writes := []struct {
		key, value string
		del        bool
	}{
		{key: "cr/crm\x00vip\x00p1", value: "003A"},
		{key: "cr/crm\x00vip\x00p2", value: "003B"},
		{key: "cr/crm\x00vip\x00p3", value: "003C"},
		{key: "cr/crm\x00gold\x00p1", value: "003D"},
		{key: "cr/crmx\x00vip\x00p1", value: "other destination"},
		{key: "cx/crm\x00p1\x00gold", value: "003D"},
		{key: "cx/crm\x00p1\x00vip", value: "003A-old"},
		{key: "cx/crm\x00p10\x00vip", value: "003E"},
		{key: "cr/crm\x00vip\x00p2", del: true},
		{key: "cr/crm\x00vip\x00p3", value: "003C2"},
		{key: "fs/texts\x003\x00vip\x00p1", value: "p"},
		{key: "fs/texts\x003\x00vip\x00p1", value: "s"},
		{key: "fs/texts\x003\x00vip\x00p4", value: "s"},
		{key: "cw/crm\x00vip\x00p5", value: "003F"},
		{key: "cw/crm\x00vip\x00p5", del: true},
	}
	for _, w := range writes {
		for _, s := range []store.ReadWriter{single, writer} {
			var err error
			if w.del {
				err = s.Delete([]byte(w.key))
			} else {
				err = s.Set([]byte(w.key), []byte(w.value))
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := writer.Set([]byte("\xffm/pos"), []byte("x")); err == nil {
		t.Fatal("a write into the mirror's reserved range was accepted")
	}
	catchUp(t, other)
	pfx := func(p string) (lower, upper []byte) { return []byte(p), store.PrefixEnd([]byte(p)) }
	for _, tc := range []struct {
		name         string
		lower, upper []byte
		reverse      bool
		limit        int
		want         string
	}{
		{name: "all", want: `"cr/crm\x00gold\x00p1"="003D" "cr/crm\x00vip\x00p1"="003A" "cr/crm\x00vip\x00p3"="003C2" ` +
			`"cr/crmx\x00vip\x00p1"="other destination" "cx/crm\x00p1\x00gold"="003D" "cx/crm\x00p1\x00vip"="003A-old" ` +
			`"cx/crm\x00p10\x00vip"="003E" "fs/texts\x003\x00vip\x00p1"="s" "fs/texts\x003\x00vip\x00p4"="s"`},
		{name: "a destination's members", want: `"cr/crm\x00gold\x00p1"="003D" "cr/crm\x00vip\x00p1"="003A" "cr/crm\x00vip\x00p3"="003C2"`},
		{name: "a former member (not p10)", want: `"cx/crm\x00p1\x00gold"="003D" "cx/crm\x00p1\x00vip"="003A-old"`},
		{name: "withdrawn, all deleted", want: ``},
		{name: "sync marks", want: `"fs/texts\x003\x00vip\x00p1"="s" "fs/texts\x003\x00vip\x00p4"="s"`},
		{name: "members, reverse", reverse: true, want: `"cr/crm\x00vip\x00p3"="003C2" "cr/crm\x00vip\x00p1"="003A" "cr/crm\x00gold\x00p1"="003D"`},
		{name: "sweep page 1", limit: 2, want: `"cr/crm\x00gold\x00p1"="003D" "cr/crm\x00vip\x00p1"="003A"`},
		{name: "sweep page 2", lower: []byte("cr/crm\x00vip\x00p1\x00"), want: `"cr/crm\x00vip\x00p3"="003C2"`},
		{name: "range", lower: []byte("cr/crm\x00vip\x00p2"), upper: []byte("cx/crm\x00p1\x00h"),
			want: `"cr/crm\x00vip\x00p3"="003C2" "cr/crmx\x00vip\x00p1"="other destination" "cx/crm\x00p1\x00gold"="003D"`},
		{name: "unbounded from fs/", lower: []byte("fs/"), want: `"fs/texts\x003\x00vip\x00p1"="s" "fs/texts\x003\x00vip\x00p4"="s"`},
		{name: "unbounded reverse", lower: []byte("fs/texts\x003\x00vip\x00p2"), reverse: true, want: `"fs/texts\x003\x00vip\x00p4"="s"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lower, upper := tc.lower, tc.upper
			switch tc.name {
			case "a destination's members", "members, reverse", "sweep page 1":
				lower, upper = pfx("cr/crm\x00")
			case "sweep page 2":
				_, upper = pfx("cr/crm\x00")
			case "a former member (not p10)":
				lower, upper = pfx("cx/crm\x00p1\x00")
			case "withdrawn, all deleted":
				lower, upper = pfx("cw/crm\x00")
			case "sync marks":
				lower, upper = pfx("fs/texts\x00")
			}
			for name, s := range map[string]store.Reader{"single node": single, "writer": writer, "follower": other} {
				var got []string
				if err := s.Scan(lower, upper, tc.reverse, func(k, v []byte) bool {
					got = append(got, fmt.Sprintf("%q=%q", k, v))
					return tc.limit == 0 || len(got) < tc.limit
				}); err != nil {
					t.Fatal(err)
				}
				if g := strings.Join(got, " "); g != tc.want {
					t.Errorf("%s: got\n%s\nwant\n%s", name, g, tc.want)
				}
			}
		})
	}
	for _, s := range []store.Reader{single, writer, other} {
		if v, err := s.Get([]byte("cr/crm\x00vip\x00p3")); err != nil || string(v) != "003C2" {
			t.Fatalf("Get = %q, %v", v, err)
		}
		if _, err := s.Get([]byte("cr/crm\x00vip\x00p2")); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get of a deleted key: %v", err)
		}
	}
}

// TestClusterRefsApplyOrder: a write's own apply and the follower's may
// come in either order; the mirror keeps the newest revision of each key,
// a deletion included.
func TestClusterRefsApplyOrder(t *testing.T) {
	type rec struct {
		seq   uint64
		value string // "": deleted
	}
	for _, tc := range []struct {
		name string
		recs []rec
		want string // "": absent
	}{
		{name: "in order", recs: []rec{{1, "a"}, {2, "b"}}, want: "b"},
		{name: "older after newer", recs: []rec{{5, "new"}, {3, "old"}}, want: "new"},
		{name: "same revision twice", recs: []rec{{4, "x"}, {4, "x"}}, want: "x"},
		{name: "deleted, then an older set", recs: []rec{{9, ""}, {8, "stale"}}, want: ""},
		{name: "set after a delete", recs: []rec{{9, ""}, {10, "back"}}, want: "back"},
		{name: "delete older than the value", recs: []rec{{7, "kept"}, {6, ""}}, want: "kept"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &clusterRefs{db: actDB(t, t.TempDir()), pos: newAppliedWatch(0)}
			for i, x := range tc.recs {
				// Alternate the follower's path and a write's own.
				ar := alog.ActivationRecord{Seq: x.seq, Key: []byte("k"), Value: []byte(x.value), Deleted: x.value == ""}
				if err := r.apply([]alog.ActivationRecord{ar}, i%2 == 0); err != nil {
					t.Fatal(err)
				}
			}
			v, err := r.Get([]byte("k"))
			switch {
			case tc.want == "" && !errors.Is(err, store.ErrNotFound):
				t.Fatalf("Get = %q, %v; want not found", v, err)
			case tc.want != "" && (err != nil || string(v) != tc.want):
				t.Fatalf("Get = %q, %v; want %q", v, err, tc.want)
			}
		})
	}
}

// TestClusterRefsImport: a node's activation store from before the cluster
// kept it (plain keys in DATA_DIR/activation) is put into the stream once
// when the node opens it as a cluster's: its keys reach the other nodes,
// except those the cluster wrote or deleted since, which the node's mirror
// then takes from the stream. Opened alone again later, the node reads
// the mirror's values as its own store.
func TestClusterRefsImport(t *testing.T) {
	l := actLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "activation")
	oldDB, err := store.Open(dir, keysStoreOptions(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	old := refStore{oldDB}
	for k, v := range map[string]string{"cr/crm\x00vip\x00p1": "003A", "cx/crm\x00p2\x00vip": "003B",
		"cr/crm\x00vip\x00p3": "stale", "cr/crm\x00vip\x00p4": "gone", "fs/texts\x001\x00vip\x00p5": "s"} {
		if err := old.Set([]byte(k), []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	// Meanwhile the cluster changed p3 and deleted p4.
	if _, err := l.PutActivation(ctx, []byte("cr/crm\x00vip\x00p3"), []byte("003C")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.PutActivation(ctx, []byte("cr/crm\x00vip\x00p4"), []byte("003D")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.DeleteActivation(ctx, []byte("cr/crm\x00vip\x00p4")); err != nil {
		t.Fatal(err)
	}
	if err := old.db.Close(); err != nil {
		t.Fatal(err)
	}

	want := `"cr/crm\x00vip\x00p1"="003A" "cr/crm\x00vip\x00p3"="003C" "cx/crm\x00p2\x00vip"="003B" "fs/texts\x001\x00vip\x00p5"="s"`
	db := actDB(t, dir)
	r := mirror(t, l, db)
	catchUp(t, r)
	if got := dump(t, r); got != want {
		t.Fatalf("the node's mirror after the import:\n%s\nwant\n%s", got, want)
	}
	fresh := mirror(t, l, actDB(t, t.TempDir()))
	catchUp(t, fresh)
	if got := dump(t, fresh); got != want {
		t.Fatalf("another node's mirror:\n%s\nwant\n%s", got, want)
	}
	last, err := l.ActivationLastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Opened again: nothing imported twice (the stream's end is unmoved).
	r2, err := openClusterRefs(ctx, ctx, db, l, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if again, err := l.ActivationLastSeq(ctx); err != nil || again != last {
		t.Fatalf("the stream's end moved from %d to %d (%v) at a second open", last, again, err)
	}
	_ = r2

	// Alone again: the same store, the bookkeeping gone.
	if err := leaveCluster(db, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := db.Scan([]byte{0xff}, nil, false, func(k, v []byte) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, refStore{db}); got != want || n != 0 {
		t.Fatalf("alone: %s (%d reserved keys)\nwant %s", got, n, want)
	}
}

// BenchmarkActivationStoreSet: a write of the activation store, on a
// single node (a synced Pebble commit) and in a cluster (a publish to
// AURUM_ACTIVATION acknowledged, here by one embedded server at one
// replica, then the mirror's unsynced commit). Reported as ratios in
// ARCHITECTURE.md "Cluster".
func BenchmarkActivationStoreSet(b *testing.B) {
	value := []byte("003000000000000001")
	run := func(b *testing.B, s store.ReadWriter) {
		for i := 0; b.Loop(); i++ {
			if err := s.Set([]byte(fmt.Sprintf("cr/crm\x00vip\x00p%d", i)), value); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("single", func(b *testing.B) {
		db, err := store.Open(b.TempDir(), keysStoreOptions(slog.New(slog.DiscardHandler)))
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		run(b, refStore{db})
	})
	b.Run("cluster", func(b *testing.B) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		l, err := alog.Open(ctx, alog.Options{Dir: b.TempDir(), Listen: "127.0.0.1:-1"})
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		if err := l.EnsureActivationStream(ctx); err != nil {
			b.Fatal(err)
		}
		db, err := store.Open(b.TempDir(), keysStoreOptions(slog.New(slog.DiscardHandler)))
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		r, err := openClusterRefs(ctx, ctx, db, l, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		run(b, r)
	})
}
