package audit_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine/audit"
	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/internal/testkeys"
)

// TestRecorderAlone: the audit stage without a log keeps references only
// as keyed hashes of their normalised form, and refuses entries without
// an action or a known result before it appends anything.
func TestRecorderAlone(t *testing.T) {
	r := audit.New(audit.Options{Now: time.Now}, nil, testkeys.Keyring(t), base.NewIDSource())

	a, b := r.RefHash("email:Rob@Example.com"), r.RefHash("EMAIL: rob@example.com ")
	if a != b || !strings.HasPrefix(a, "email:") || strings.Contains(strings.ToLower(a), "rob") {
		t.Fatalf("RefHash: %q and %q", a, b)
	}
	if c := r.RefHash("email:ann@example.com"); c == a {
		t.Fatalf("two people, one hash %q", c)
	}
	if bad := r.RefHash("no colon"); !strings.HasPrefix(bad, "invalid:") || strings.Contains(bad, "colon") {
		t.Fatalf("RefHash of a bad reference: %q", bad)
	}
	for _, e := range []audit.AuditEntry{{Result: audit.AuditOK}, {Action: "GET /v1/x", Result: "maybe"}} {
		if err := r.Audit(context.Background(), e); !errors.Is(err, base.ErrInvalid) {
			t.Fatalf("Audit(%+v): %v, want ErrInvalid", e, err)
		}
	}
}
