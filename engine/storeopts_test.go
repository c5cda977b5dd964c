package engine

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/internal/testkeys"
	"github.com/aurumcdp/aurum/projections"
)

// TestStateOpener: the state machine's opener marks what will never open
// (destroyed or unknown key, corrupt value) projections.ErrUnreadable, and
// opens the rest as the keyring does.
func TestStateOpener(t *testing.T) {
	keys := testkeys.Keyring(t)
	open := stateOpener(keys)
	id := keys.Hash("email", "rob@example.com")
	if err := keys.Ensure([][]byte{id}); err != nil {
		t.Fatal(err)
	}
	sealed, err := keys.Seal(id, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := open(id, sealed); err != nil || !bytes.Equal(pt, []byte("hello")) {
		t.Fatalf("open: %q, %v", pt, err)
	}
	corrupt := append([]byte(nil), sealed...)
	corrupt[len(corrupt)-1] ^= 1
	if _, err := open(id, corrupt); !errors.Is(err, projections.ErrUnreadable) {
		t.Fatalf("corrupt value: %v, want ErrUnreadable", err)
	}
	if _, err := open(keys.Hash("email", "nobody@example.com"), sealed); !errors.Is(err, projections.ErrUnreadable) {
		t.Fatalf("unknown key: %v, want ErrUnreadable", err)
	}
	if err := keys.Destroy(id); err != nil {
		t.Fatal(err)
	}
	if _, err := open(id, sealed); !errors.Is(err, projections.ErrUnreadable) {
		t.Fatalf("destroyed key: %v, want ErrUnreadable", err)
	}
}

// TestInteractionKeys: the cached keys are the keyed hash's, whatever the
// value's length (at, below and above shortValueLen, trailing zero bytes,
// empty) and kind (cached or not), before and after the cache fills and
// is cleared; the cache holds at most its bound per map.
func TestInteractionKeys(t *testing.T) {
	keys := testkeys.Keyring(t)
	want := func(kind, value string) string {
		return hex.EncodeToString(keys.Hash("interaction."+kind, value)[:8])
	}
	long := strings.Repeat("x", shortValueLen)
	values := []string{"", "a", "a\x00", "a\x00\x00", "sku-1", long[:shortValueLen-1], long, long + "y", long + "yz", strings.Repeat("é", 100)}
	const bound = 5
	c := newInteractionKeys(keys, bound)
	seen := map[string]string{}
	for round := range 3 {
		for i, v := range values {
			for _, kind := range []string{"category", "product", "brand"} {
				v := fmt.Sprint(v, i%2*round) // new values each round for half of them
				got := c.key(kind, v)
				if w := want(kind, v); got != w {
					t.Fatalf("round %d: key(%q, %q) = %s, want %s", round, kind, v, got, w)
				}
				if prev, ok := seen[kind+"\x00"+v]; ok && prev != got {
					t.Fatalf("key(%q, %q) changed: %s then %s", kind, v, prev, got)
				}
				seen[kind+"\x00"+v] = got
			}
		}
		if n := c.len(); n == 0 || n > 4*bound {
			t.Fatalf("round %d: the cache holds %d keys, bound %d per map", round, n, bound)
		}
	}
}
