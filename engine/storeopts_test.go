package engine

import (
	"bytes"
	"errors"
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
