package engine

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
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

// TestInteractionKey: the cached keys are the keyed hashes themselves, per
// kind (a category and a product of the same value differ), before and
// after the cache fills and is cleared.
func TestInteractionKey(t *testing.T) {
	kr := testkeys.Keyring(t)
	key := InteractionKey(kr)
	want := func(kind, value string) string {
		return hex.EncodeToString(kr.Hash("interaction."+kind, value)[:8])
	}
	for round := range 3 { // the second and third read the cache (and refill it)
		for i := range 5000 { // over the cache's bound: cleared on the way
			for _, kind := range []string{"category", "product"} {
				v := fmt.Sprint("v-", i%4500)
				if got := key(kind, v); got != want(kind, v) {
					t.Fatalf("round %d: key(%q, %q) = %s, want %s", round, kind, v, got, want(kind, v))
				}
			}
		}
	}
	if key("category", "shoes") == key("product", "shoes") {
		t.Fatal("a category and a product of the same value share a key")
	}
}
