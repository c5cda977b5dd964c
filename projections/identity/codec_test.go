package identity

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
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
		"msgpack":      {0x81, 0xa1, 'r', 0xc0},
		"empty":        nil,
	} {
		if _, err := decodeNode(in); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
		}
	}
	if _, err := decodeNode(good); err != nil {
		t.Fatalf("control: %v", err)
	}
}

// FuzzDecodeNode checks that decoding a stored node never panics, that
// what decodes holds memory
// bounded by the input's length, and that it re-encodes to a fixed point.
func FuzzDecodeNode(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 4 {
		n := randomNode(r)
		f.Add(encodeNode(n))
	}
	f.Add([]byte{nodeV1, 0, 0x10})
	f.Fuzz(func(t *testing.T, in []byte) {
		n, err := decodeNode(in)
		if err != nil {
			return
		}
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
