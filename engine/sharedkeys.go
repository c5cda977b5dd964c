package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/seal"
)

// sharedKeys is seal.SharedKeys on the log's AURUM_KEYS stream
// (Options.SharedKeys). The engine builds its keyring before the log is
// open (the NATS authorizer needs the access stage, which needs the
// keyring), so the log is reached through a function: Open sets e.log
// before anything uses the shared store (the start-time re-destroy comes
// after the log opens).
type sharedKeys struct{ log func() *alog.Log }

var _ seal.SharedKeys = sharedKeys{}

var errKeysBeforeLog = errors.New("engine: shared keys used before the log is open")

func (s sharedKeys) Create(ctx context.Context, keys []seal.SharedKey) ([]seal.SharedKey, error) {
	l := s.log()
	if l == nil {
		return nil, errKeysBeforeLog
	}
	offers := make([]alog.KeyOffer, len(keys))
	for i, k := range keys {
		offers[i] = alog.KeyOffer{ID: k.ID, Wrapped: k.Wrapped}
	}
	got, err := l.CreateKeys(ctx, offers)
	if err != nil {
		return nil, err
	}
	out := make([]seal.SharedKey, len(got))
	for i, g := range got {
		if out[i], err = toSealKey(keys[i].ID, g); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s sharedKeys) Get(ctx context.Context, id []byte) (seal.SharedKey, error) {
	l := s.log()
	if l == nil {
		return seal.SharedKey{}, errKeysBeforeLog
	}
	g, err := l.GetKey(ctx, id)
	if err != nil {
		return seal.SharedKey{}, err
	}
	return toSealKey(id, g)
}

func (s sharedKeys) Destroy(ctx context.Context, ids [][]byte) error {
	l := s.log()
	if l == nil {
		return errKeysBeforeLog
	}
	return l.DestroyKeys(ctx, ids)
}

func toSealKey(id []byte, g alog.KeyEntry) (seal.SharedKey, error) {
	switch g.State {
	case alog.KeyUnknown:
		return seal.SharedKey{ID: id, State: seal.SharedUnknown}, nil
	case alog.KeyPresent:
		return seal.SharedKey{ID: id, State: seal.SharedPresent, Wrapped: g.Wrapped}, nil
	case alog.KeyDestroyed:
		return seal.SharedKey{ID: id, State: seal.SharedDestroyed}, nil
	default:
		return seal.SharedKey{}, fmt.Errorf("engine: shared keys: unknown state %d", g.State)
	}
}

// followKeys writes the keys other nodes create to this node's keys
// database as they are stored in AURUM_KEYS (seal.Keyring.Adopt), so that
// the apply loop seldom reads AURUM_KEYS for a key it lacks. A failure is
// logged and the follower restarts from its last position a second later:
// the apply loop's reads cover meanwhile.
func (e *Engine) followKeys(ctx context.Context) error {
	for {
		pos, err := e.keys.AdoptedPosition()
		if err != nil {
			return err
		}
		err = e.log.FollowKeys(ctx, pos+1, func(recs []alog.KeyRecord) error {
			keys := make([]seal.SharedKey, len(recs))
			for i, r := range recs {
				keys[i] = seal.SharedKey{ID: r.ID, Wrapped: r.Wrapped, State: seal.SharedUnknown}
				if r.State == alog.KeyPresent {
					keys[i].State = seal.SharedPresent
				}
			}
			_, err := e.keys.Adopt(keys, recs[len(recs)-1].Seq)
			return err
		})
		if err == nil || errors.Is(err, alog.ErrClosed) || ctx.Err() != nil {
			return ctx.Err()
		}
		e.opts.Logger.Warn("engine: key follower: will restart", "err", err)
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
