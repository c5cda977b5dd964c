package engine

import (
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/aurumcdp/aurum/internal/testkeys"
)

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
