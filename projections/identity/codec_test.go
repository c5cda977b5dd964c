package identity

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

func randomBytes(r *rand.Rand, n int) []byte {
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	return b
}

// randomNode sets every field of a node (nil for an empty slice, as the
// codec decodes it).
func randomNode(r *rand.Rand) *node {
	n := &node{Redirect: randomBytes(r, r.IntN(2)*IDLen)}
	for range r.IntN(4) {
		n.IDs = append(n.IDs, nodeID{Type: strings.Repeat("t", r.IntN(8)), Hash: randomBytes(r, r.IntN(2)*IDLen)})
	}
	for range r.IntN(4) {
		n.MergedFrom = append(n.MergedFrom, randomBytes(r, IDLen))
	}
	return n
}

// TestNodeCodecCoversEveryField fails when a field is added to node or
// nodeID without being encoded: the field counts are pinned (update them
// with codec.go: a new format version), and random values in every field
// must survive the round trip.
func TestNodeCodecCoversEveryField(t *testing.T) {
	for _, c := range []struct {
		v      any
		fields int
	}{{node{}, 3}, {nodeID{}, 2}} {
		if n := reflect.TypeOf(c.v).NumField(); n != c.fields {
			t.Errorf("%T has %d fields, the node codec encodes %d: update codec.go (a new format version) and this count", c.v, n, c.fields)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		n := randomNode(r)
		b := encodeNode(n)
		if IsLegacyNode(b) {
			t.Fatal("encodeNode wrote the legacy form")
		}
		got, err := decodeNode(b)
		if err != nil {
			t.Fatalf("case %d: decode: %v", i, err)
		}
		if !reflect.DeepEqual(got, n) {
			t.Fatalf("case %d: round trip\n got %#v\nwant %#v", i, got, n)
		}
		if !bytes.Equal(encodeNode(got), b) {
			t.Fatalf("case %d: re-encoding differs", i)
		}
	}
	if !bytes.Equal(encodeNode(&node{IDs: []nodeID{}, MergedFrom: [][]byte{}, Redirect: []byte{}}), encodeNode(&node{})) {
		t.Fatal("empty and nil slices encode differently")
	}
}

// TestLegacyNodeDecodesEqual: a node stored in msgpack by earlier versions
// decodes to the same value as its current form, and CanonicalNode turns it
// into the current form's bytes.
func TestLegacyNodeDecodesEqual(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 1000 {
		n := randomNode(r)
		cur := encodeNode(n)
		old, err := msgpack.Marshal(n) // as resolve.go wrote nodes before codec.go
		if err != nil {
			t.Fatal(err)
		}
		if !IsLegacyNode(old) {
			t.Fatal("msgpack node taken for the current form")
		}
		fromOld, err := decodeNode(old)
		if err != nil {
			t.Fatalf("case %d: legacy decode: %v", i, err)
		}
		if !reflect.DeepEqual(fromOld, n) {
			t.Fatalf("case %d: legacy decodes to\n%#v\nwant\n%#v", i, fromOld, n)
		}
		if !bytes.Equal(CanonicalNode(old), cur) {
			t.Fatalf("case %d: CanonicalNode(legacy) is not the current encoding", i)
		}
		if !bytes.Equal(CanonicalNode(cur), cur) {
			t.Fatalf("case %d: CanonicalNode changed a current node", i)
		}
		if back, err := LegacyNode(cur); err != nil || !bytes.Equal(back, old) {
			t.Fatalf("case %d: LegacyNode = %x, %v; want the legacy bytes", i, back, err)
		}
	}
	if bad := []byte{0x81, 0xa1, 'r'}; !bytes.Equal(CanonicalNode(bad), bad) {
		t.Fatal("CanonicalNode changed an undecodable value")
	}
}

// TestLegacyNodesKeepWorking: a keychain whose nodes were written in
// msgpack by an earlier version passes Check and, resolving the rest of the
// events, ends in the same state (nodes compared in their current form) as
// a keychain written entirely by this version; every node it re-writes is
// in the current form.
func TestLegacyNodesKeepWorking(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	evs := genEvents(rng, 200, 0, true)
	k := New(DefaultConfig())
	cur, old := store.NewMem(), store.NewMem()
	resolveAll(t, k, cur, evs[:100], false)
	resolveAll(t, k, old, evs[:100], false)
	converted := 0
	for _, e := range dump(t, old) {
		if !strings.HasPrefix(e.k, string(prefixIP)) {
			continue
		}
		v, err := LegacyNode([]byte(e.v))
		if err != nil {
			t.Fatal(err)
		}
		if err := old.Set([]byte(e.k), v); err != nil {
			t.Fatal(err)
		}
		converted++
	}
	if converted < 10 {
		t.Fatalf("only %d nodes converted: the events exercise too little", converted)
	}
	if err := k.Check(old); err != nil {
		t.Fatalf("Check on legacy nodes: %v", err)
	}
	resolveAll(t, k, cur, evs[100:], false)
	resolveAll(t, k, old, evs[100:], false)
	canon := func(s *store.Mem) (out []kv, legacy int) {
		for _, e := range dump(t, s) {
			if strings.HasPrefix(e.k, string(prefixIP)) {
				if IsLegacyNode([]byte(e.v)) {
					legacy++
				}
				e.v = string(CanonicalNode([]byte(e.v)))
			}
			out = append(out, e)
		}
		return out, legacy
	}
	dc, lc := canon(cur)
	do, lo := canon(old)
	if lc != 0 {
		t.Fatalf("%d legacy nodes written by this version", lc)
	}
	if lo == 0 || lo == converted {
		t.Fatalf("%d of %d legacy nodes left: want some re-written and some not", lo, converted)
	}
	if !reflect.DeepEqual(dc, do) {
		t.Fatal("resolving the rest of the events on legacy nodes gave another keychain")
	}
	if err := k.Check(old); err != nil {
		t.Fatal(err)
	}
}

// TestDecodeNodeCorrupt: malformed current-form nodes are refused with
// ErrCorrupt, never a panic.
func TestDecodeNodeCorrupt(t *testing.T) {
	good := encodeNode(&node{IDs: []nodeID{{Type: "email", Hash: bytes.Repeat([]byte{1}, IDLen)}}, MergedFrom: [][]byte{bytes.Repeat([]byte{2}, IDLen)}})
	for name, in := range map[string][]byte{
		"version only": {nodeV1},
		"truncated":    good[:len(good)-1],
		"trailing":     append(bytes.Clone(good), 0),
		"huge count":   {nodeV1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"long length":  {nodeV1, 0x20, 1},
	} {
		if _, err := decodeNode(in); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
		}
	}
	if _, err := decodeNode(good); err != nil {
		t.Fatalf("control: %v", err)
	}
}

// FuzzDecodeNode checks that decoding a stored node (current or legacy
// form) never panics, that what decodes from the current form holds memory
// bounded by the input's length, and that it re-encodes to a fixed point.
func FuzzDecodeNode(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 4 {
		n := randomNode(r)
		f.Add(encodeNode(n))
		if old, err := msgpack.Marshal(n); err == nil {
			f.Add(old)
		}
	}
	f.Add([]byte{nodeV1, 0, 0x10})
	f.Fuzz(func(t *testing.T, in []byte) {
		n, err := decodeNode(in)
		if err != nil {
			return
		}
		if !IsLegacyNode(in) {
			size := int(reflect.TypeOf(*n).Size()) + len(n.Redirect)
			for _, id := range n.IDs {
				size += int(reflect.TypeOf(id).Size()) + len(id.Type) + len(id.Hash)
			}
			for _, m := range n.MergedFrom {
				size += 24 + len(m)
			}
			if limit := 256 + 64*len(in); size > limit {
				t.Fatalf("%d input bytes decoded into %d bytes of node (limit %d)", len(in), size, limit)
			}
		}
		b1 := encodeNode(n)
		n2, err := decodeNode(b1)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !bytes.Equal(encodeNode(n2), b1) {
			t.Fatal("encoding is not a fixed point")
		}
	})
}
