// Package testkeys is test support: a throwaway keyring (a keys database in
// the test's temporary directory, a fixed master key), closed when the test
// ends.
package testkeys

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/aurumcdp/aurum/seal"
	"github.com/aurumcdp/aurum/store"
)

// Keyring returns a keyring over a new keys database under t.TempDir().
func Keyring(t testing.TB) *seal.Keyring {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "keys"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	keys, err := seal.NewKeyring(db, bytes.Repeat([]byte{7}, 32), nil)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}
