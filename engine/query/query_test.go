package query_test

import (
	"errors"
	"testing"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/engine/query"
	"github.com/aurumcdp/aurum/internal/testkeys"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/store"
)

// memState is query.State over an in-memory store.
type memState struct {
	db *store.Mem
	sm *projections.StateMachine
}

func (s memState) Read(fn func(r store.Reader, sm *projections.StateMachine) error) error {
	return fn(s.db, s.sm)
}

// TestReaderAlone: the read side on its own, over an empty state: bad
// requests are ErrInvalid or ErrBadRef, unknown people ErrNotFound, and a
// preview of an empty state is exact and empty.
func TestReaderAlone(t *testing.T) {
	db := store.NewMem()
	sm, err := projections.Open(db, projections.Options{Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	st := memState{db: db, sm: sm}
	q := query.New(query.Options{}, testkeys.Keyring(t), st)

	if _, err := q.Profile("email:nobody@example.com"); !errors.Is(err, base.ErrNotFound) {
		t.Fatalf("unknown person: %v", err)
	}
	for _, ref := range []string{"nocolon", "profile_id:not-a-ulid", "email:"} {
		if _, err := q.Profile(ref); !errors.Is(err, base.ErrBadRef) {
			t.Fatalf("Profile(%q): %v, want ErrBadRef", ref, err)
		}
	}
	if _, err := q.Events("email:a@b.c", 0); err == nil {
		t.Fatal("Events with limit 0: no error")
	}
	if _, err := q.Preview(`count("x") >= 1`, 1001, false); !errors.Is(err, base.ErrInvalid) {
		t.Fatalf("sample 1001: %v", err)
	}
	if _, err := q.Preview(`count("x" >= 1`, 5, false); !errors.Is(err, base.ErrInvalid) {
		t.Fatalf("bad rule: %v", err)
	}
	pv, err := q.Preview(`count("x") >= 1`, 5, false)
	if err != nil || !pv.Exact || pv.Size != 0 || pv.Profiles != 0 || len(pv.Sample) != 0 {
		t.Fatalf("preview of nobody: %+v, %v", pv, err)
	}
	if _, _, err := q.AudienceMembers("none", "", 10); !errors.Is(err, base.ErrNotFound) {
		t.Fatalf("members of an unknown audience: %v", err)
	}
	if _, _, err := q.AudienceMembers("none", "", 0); !errors.Is(err, base.ErrInvalid) {
		t.Fatalf("limit 0: %v", err)
	}
	if list, err := q.Audiences(); err != nil || len(list) != 0 {
		t.Fatalf("Audiences: %v, %v", list, err)
	}
}
