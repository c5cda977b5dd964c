package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/internal/check"
)

// TestActivationSubject: keys of the activation store (raw bytes: the
// refs' "\x00"-separated names) map to subject tokens a JetStream subject
// and KV key allow, and back, one to one.
func TestActivationSubject(t *testing.T) {
	token := regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	for _, tc := range []struct {
		name, key string
		err       bool
	}{
		{name: "member ref", key: "cr/crm\x00vip\x0001JD5Q3G7X9K0M2N4P6R8T0V2W"},
		{name: "former member", key: "cx/crm\x0001JD5Q3G7X9K0M2N4P6R8T0V2W\x00vip"},
		{name: "first sync mark", key: "fs/texts\x007\x00vip\x0001JD5Q3G7X9K0M2N4P6R8T0V2W"},
		{name: "dots stars and spaces", key: "a.b *>c"},
		{name: "binary", key: "\x00\xff\xfe."},
		{name: "one byte", key: "x"},
		{name: "longest", key: strings.Repeat("k", MaxActivationKey)},
		{name: "empty", key: "", err: true},
		{name: "too long", key: strings.Repeat("k", MaxActivationKey+1), err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ActivationSubject([]byte(tc.key))
			if tc.err {
				if err == nil {
					t.Fatalf("ActivationSubject(%q) = %q, want an error", tc.key, s)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tok, ok := strings.CutPrefix(s, ActivationPrefix)
			if !ok || !token.MatchString(tok) {
				t.Fatalf("subject %q: token %q is not [A-Za-z0-9_-]+ under %s", s, tok, ActivationPrefix)
			}
			back, err := ActivationKey(s)
			if err != nil || string(back) != tc.key {
				t.Fatalf("ActivationKey(%q) = %q, %v; want %q", s, back, err, tc.key)
			}
		})
	}
	for _, s := range []string{"aurum.keys.AA", ActivationPrefix, ActivationPrefix + "a.b", ActivationPrefix + "A===", ActivationPrefix + "*"} {
		if k, err := ActivationKey(s); !errors.Is(err, ErrMalformedActivationRecord) {
			t.Errorf("ActivationKey(%q) = %q, %v; want ErrMalformedActivationRecord", s, k, err)
		}
	}
}

func TestActivationRecordOf(t *testing.T) {
	subj, err := ActivationSubject([]byte("cr/d\x00a\x00p"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		data    []byte
		want    ActivationRecord
		wantErr bool
	}{
		{name: "set", data: encodeActivation([]byte("003000000000000001"), false), want: ActivationRecord{Key: []byte("cr/d\x00a\x00p"), Value: []byte("003000000000000001")}},
		{name: "set empty", data: encodeActivation(nil, false), want: ActivationRecord{Key: []byte("cr/d\x00a\x00p"), Value: []byte{}}},
		{name: "delete", data: encodeActivation(nil, true), want: ActivationRecord{Key: []byte("cr/d\x00a\x00p"), Deleted: true}},
		{name: "short", data: []byte{activationVersion}, wantErr: true},
		{name: "version", data: []byte{9, activationSet, 'x'}, wantErr: true},
		{name: "op", data: []byte{activationVersion, 7}, wantErr: true},
		{name: "delete with value", data: []byte{activationVersion, activationDelete, 'x'}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := activationRecordOf(subj, tc.data)
			if tc.wantErr != (err != nil) {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if err == nil && (!bytes.Equal(got.Key, tc.want.Key) || !bytes.Equal(got.Value, tc.want.Value) || got.Deleted != tc.want.Deleted) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestActivationStream: writes return their revision once stored, a key
// keeps only its last record (a tombstone after a delete), an import
// stores only keys the stream never held, and a follower from any
// position gets the live records in stream order, the tombstones
// included, and then what is written while it follows.
func TestActivationStream(t *testing.T) {
	l := openLog(t, testOptions(t.TempDir()))
	ctx := testCtx(t)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := l.PutActivation(short, []byte("a"), []byte("1"))
	cancel()
	if err == nil {
		t.Fatal("a write before EnsureActivationStream succeeded")
	}
	if err := l.EnsureActivationStream(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.EnsureActivationStream(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
	put := func(k, v string) uint64 {
		t.Helper()
		seq, err := l.PutActivation(ctx, []byte(k), []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	s1 := put("cr/d\x00a\x00p1", "ref1")
	s2 := put("cr/d\x00a\x00p2", "ref2")
	s3 := put("cr/d\x00a\x00p1", "ref1b") // replaces s1
	s4, err := l.DeleteActivation(ctx, []byte("cr/d\x00a\x00p2"))
	if err != nil {
		t.Fatal(err)
	}
	if !(s1 < s2 && s2 < s3 && s3 < s4) {
		t.Fatalf("revisions %d %d %d %d not increasing", s1, s2, s3, s4)
	}
	for _, tc := range []struct {
		key  string
		want bool
	}{
		{"cx/d\x00p9\x00a", true},  // never held: stored
		{"cr/d\x00a\x00p1", false}, // held
		{"cr/d\x00a\x00p2", false}, // deleted: its tombstone is there
		{"cx/d\x00p9\x00a", false}, // imported just now
	} {
		ok, err := l.ImportActivation(ctx, []byte(tc.key), []byte("old"))
		if err != nil || ok != tc.want {
			t.Fatalf("ImportActivation(%q) = %v, %v; want %v", tc.key, ok, err, tc.want)
		}
	}
	if _, err := l.PutActivation(ctx, []byte("v"), bytes.Repeat([]byte{1}, MaxActivationValue+1)); err == nil {
		t.Fatal("a value over MaxActivationValue was written")
	}
	last, err := l.ActivationLastSeq(ctx)
	if err != nil || last != s4+1 {
		t.Fatalf("last seq %d, %v; want %d", last, err, s4+1)
	}

	fctx, stop := context.WithCancel(ctx)
	var mu sync.Mutex
	var got []ActivationRecord
	done := make(chan error, 1)
	go func() {
		done <- l.FollowActivation(fctx, 0, func(recs []ActivationRecord) error {
			mu.Lock()
			got = append(got, recs...)
			mu.Unlock()
			return nil
		})
	}()
	s6 := put("fs/t\x001\x00a\x00p3", "s")
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) == 0 || got[len(got)-1].Seq < s6 {
			return fmt.Errorf("%d records so far", len(got))
		}
		return nil
	})
	stop()
	if err := <-done; err != nil {
		t.Fatalf("FollowActivation after its context ended: %v", err)
	}
	var desc []string
	for _, r := range got {
		desc = append(desc, fmt.Sprintf("%d %q %q %v", r.Seq, r.Key, r.Value, r.Deleted))
	}
	want := []string{
		fmt.Sprintf("%d %q %q false", s3, "cr/d\x00a\x00p1", "ref1b"),
		fmt.Sprintf("%d %q %q true", s4, "cr/d\x00a\x00p2", ""),
		fmt.Sprintf("%d %q %q false", s4+1, "cx/d\x00p9\x00a", "old"),
		fmt.Sprintf("%d %q %q false", s6, "fs/t\x001\x00a\x00p3", "s"),
	}
	if strings.Join(desc, "\n") != strings.Join(want, "\n") {
		t.Fatalf("followed:\n%s\nwant:\n%s", strings.Join(desc, "\n"), strings.Join(want, "\n"))
	}
	// A follower from a later position starts there.
	var from []ActivationRecord
	fctx, stop = context.WithCancel(ctx)
	go func() {
		done <- l.FollowActivation(fctx, s6, func(recs []ActivationRecord) error {
			mu.Lock()
			from = append(from, recs...)
			mu.Unlock()
			return nil
		})
	}()
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(from) != 1 || from[0].Seq != s6 {
			return fmt.Errorf("followed from %d: %+v", s6, from)
		}
		return nil
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
