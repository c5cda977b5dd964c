package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/aurumcdp/aurum/activation"
	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/store"
	"github.com/oklog/ulid/v2"
)

// destinationKeyID names the data key that seals destination secrets.
func (e *Engine) destinationKeyID() []byte { return e.keys.Hash("system", "destination-secrets") }

// DestinationInfo describes a destination (never its secret or
// credentials).
type DestinationInfo struct {
	Name      string               `json:"name"`
	Kind      string               `json:"kind"`
	URL       string               `json:"url,omitempty"`
	Config    json.RawMessage      `json:"config,omitempty"` // without the credentials
	Audiences []string             `json:"audiences"`
	Channel   string               `json:"channel,omitempty"`
	Version   int64                `json:"version"`
	Stats     activation.DestStats `json:"stats"`
}

// PutDestination creates or replaces a destination through the log; its
// worker starts once the record is applied. A webhook's secret and a
// connector's credentials (its kind's secret config fields) are sealed.
func (e *Engine) PutDestination(ctx context.Context, d activation.Destination) (DestinationInfo, error) {
	if !d.IsWebhook() {
		if k, ok := activation.Kinds()[d.Kind]; ok && d.Channel == "" {
			d.Channel = k.Channel
		}
	}
	if err := d.Validate(); err != nil {
		return DestinationInfo{}, fmt.Errorf("%w: %w", base.ErrInvalid, err)
	}
	if err := e.checkDestinationAudiences(d.Name, d.Audiences); err != nil {
		return DestinationInfo{}, err
	}
	secret, config := []byte(d.Secret), []byte(nil)
	if !d.IsWebhook() {
		var err error
		if config, secret, err = splitSecrets(d.Kind, d.Config); err != nil {
			return DestinationInfo{}, fmt.Errorf("%w: %w", base.ErrInvalid, err)
		}
	}
	kid := e.destinationKeyID()
	if err := e.keys.Ensure([][]byte{kid}); err != nil {
		return DestinationInfo{}, err
	}
	sealed, err := e.keys.Seal(kid, secret)
	if err != nil {
		return DestinationInfo{}, err
	}
	kind := d.Kind
	if d.IsWebhook() {
		kind = ""
	}
	seq, err := e.appendControl(ctx, projections.Control{Kind: projections.ControlDestinationPut, Destination: projections.Destination{
		Name: d.Name, Kind: kind, URL: d.URL, Config: config, SecretKey: kid, SecretSealed: sealed, Audiences: d.Audiences, Channel: d.Channel}})
	if err != nil {
		return DestinationInfo{}, err
	}
	if err := e.WaitApplied(ctx, seq); err != nil {
		return DestinationInfo{}, err
	}
	return e.Destination(d.Name)
}

// splitSecrets splits a connector's config into the part kept in clear and
// its credentials (the kind's Secrets fields), each a JSON object.
func splitSecrets(kind string, config json.RawMessage) (clear, secret []byte, err error) {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(config, &all); err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	sec := map[string]json.RawMessage{}
	for _, f := range activation.Kinds()[kind].Secrets {
		if v, ok := all[f]; ok {
			sec[f] = v
			delete(all, f)
		}
	}
	if clear, err = json.Marshal(all); err != nil {
		return nil, nil, err
	}
	if secret, err = json.Marshal(sec); err != nil {
		return nil, nil, err
	}
	return clear, secret, nil
}

// joinSecrets is the inverse of splitSecrets.
func joinSecrets(clear, secret []byte) (json.RawMessage, error) {
	all := map[string]json.RawMessage{}
	if len(clear) > 0 {
		if err := json.Unmarshal(clear, &all); err != nil {
			return nil, err
		}
	}
	var sec map[string]json.RawMessage
	if err := json.Unmarshal(secret, &sec); err != nil {
		return nil, err
	}
	for k, v := range sec {
		all[k] = v
	}
	return json.Marshal(all)
}

// DeleteDestination removes a destination; its worker stops.
func (e *Engine) DeleteDestination(ctx context.Context, name string) error {
	if _, err := e.Destination(name); err != nil {
		return err
	}
	seq, err := e.appendControl(ctx, projections.Control{Kind: projections.ControlDestinationDelete, Destination: projections.Destination{Name: name}})
	if err != nil {
		return err
	}
	return e.WaitApplied(ctx, seq)
}

// Destinations lists the destinations with their delivery statistics.
func (e *Engine) Destinations() ([]DestinationInfo, error) {
	var ds []projections.Destination
	err := e.read(func(r store.Reader, _ *projections.StateMachine) (err error) {
		ds, err = projections.Destinations(r)
		return err
	})
	if err != nil {
		return nil, err
	}
	stats := e.dispatcher.Stats()
	out := make([]DestinationInfo, 0, len(ds))
	for _, d := range ds {
		kind := d.Kind
		if kind == "" {
			kind = activation.KindWebhook
		}
		out = append(out, DestinationInfo{Name: d.Name, Kind: kind, URL: d.URL, Config: d.Config, Audiences: d.Audiences,
			Channel: d.Channel, Version: d.Version, Stats: stats[d.Name]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Destination returns one destination.
func (e *Engine) Destination(name string) (DestinationInfo, error) {
	all, err := e.Destinations()
	if err != nil {
		return DestinationInfo{}, err
	}
	for _, d := range all {
		if d.Name == name {
			return d, nil
		}
	}
	return DestinationInfo{}, fmt.Errorf("%w: destination %q", base.ErrNotFound, name)
}

// reloadDestinations hands the stored destinations (secrets unsealed) to
// the dispatcher, which starts and stops workers to match. In a cluster
// only the node that has the deliveries runs them (deliverer): elsewhere
// they are suspended, their shared durable consumers and positions kept;
// under a new epoch they are all restarted (a worker delivers under the
// epoch it started with).
func (e *Engine) reloadDestinations() error {
	e.destMu.Lock()
	defer e.destMu.Unlock()
	epoch, ok := e.deliverer()
	gained := ok && (!e.destsOK || e.destsEpoch != epoch)
	if !ok || gained {
		e.destsReady.Store(0)
		if err := e.dispatcher.Suspend(); err != nil {
			return err
		}
	}
	if gained && e.clusterRefs != nil {
		// What the previous deliverer wrote to the activation store
		// (refs, first sync marks) must be here before a worker reads
		// it. Not caught up: the workers stay suspended and the
		// leadership watcher tries again.
		ctx, cancel := context.WithTimeout(e.ctx, catchUpAttempt)
		err := e.clusterRefs.CatchUp(ctx)
		cancel()
		if err != nil {
			e.destsOK = false
			return err
		}
	}
	e.destsOK, e.destsEpoch = ok, epoch
	if !ok {
		return nil
	}
	var ds []projections.Destination
	err := e.read(func(r store.Reader, _ *projections.StateMachine) (err error) {
		ds, err = projections.Destinations(r)
		return err
	})
	if err != nil {
		return err
	}
	dests := make([]activation.Destination, 0, len(ds))
	for _, d := range ds {
		if d.Channel == "" {
			// Made before destinations had channels: whom it contacts, and
			// so whose consent applies, is unknown. Never send unchecked.
			e.opts.Logger.Error("engine: destination has no channel; destination disabled until it is recreated with one",
				"destination", d.Name, "channels", activation.Channels)
			continue
		}
		secret, err := e.keys.Open(d.SecretKey, d.SecretSealed)
		if err != nil {
			e.opts.Logger.Error("engine: destination secret unreadable; destination disabled", "destination", d.Name, "err", err)
			continue
		}
		ad := activation.Destination{Name: d.Name, Kind: d.Kind, URL: d.URL, Audiences: d.Audiences,
			Channel: d.Channel, Since: time.UnixMilli(d.Created), Version: d.Version, SyncedAt: d.SyncedAt, OutStart: d.OutStart}
		if ad.IsWebhook() {
			ad.Secret = string(secret)
		} else if ad.Config, err = joinSecrets(d.Config, secret); err != nil {
			e.opts.Logger.Error("engine: destination config unreadable; destination disabled", "destination", d.Name, "err", err)
			continue
		}
		dests = append(dests, ad)
	}
	err = e.dispatcher.Set(dests)
	e.destsReady.Store(epoch + 1) // the workers that could start run
	return err
}

// catchUpAttempt bounds one wait of a new deliverer for its activation
// store (reloadDestinations holds destMu, which the apply loop may wait
// for).
const catchUpAttempt = 2 * time.Second

// people is the engine as activation's connectors see it
// (activation.People).
type people struct{ e *Engine }

var _ activation.People = people{}

// membersPage is the page size of a first sync's member scan.
const membersPage = 10000

// Members reads the members of audiences and the applied position in one
// snapshot.
func (p people) Members(audiences []string) (uint64, []activation.Member, error) {
	var applied uint64
	var out []activation.Member
	err := p.e.read(func(r store.Reader, sm *projections.StateMachine) error {
		var err error
		if applied, err = projections.Applied(r); err != nil {
			return err
		}
		for _, a := range audiences {
			var after []byte
			for {
				_, ids, err := sm.AudienceMembers(r, a, after, membersPage)
				if err != nil {
					return err
				}
				for _, id := range ids {
					out = append(out, activation.Member{Audience: a, ProfileID: ulid.ULID(id).String()})
				}
				if len(ids) < membersPage {
					break
				}
				after = ids[len(ids)-1]
			}
		}
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("engine: members of %v: %w", audiences, err)
	}
	return applied, out, nil
}

// Person returns the person's identifiers (emails, phones) and traits.
func (p people) Person(profileID string) (activation.Person, bool, error) {
	v, err := p.e.reader.Profile(event.ProfileID + ":" + profileID)
	if errors.Is(err, base.ErrNotFound) {
		return activation.Person{}, false, nil
	}
	if err != nil {
		return activation.Person{}, false, err
	}
	values := func(typ string) []string {
		var out []string
		for _, iv := range v.Identifiers[typ] {
			if s, ok := iv.Value.(string); ok && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
		return out
	}
	return activation.Person{Emails: values("email"), Phones: values("phone"), Traits: v.Traits}, true, nil
}

// MarkSynced appends destination.synced and waits for its apply.
func (p people) MarkSynced(ctx context.Context, name string, version int64, applied, outStart uint64) error {
	seq, err := p.e.appendControl(ctx, projections.Control{Kind: projections.ControlDestinationSynced,
		Destination: projections.Destination{Name: name, Version: version, SyncedAt: applied, OutStart: outStart}})
	if err != nil {
		return err
	}
	return p.e.WaitApplied(ctx, seq)
}

// erasureDestinations hands the erasure worker the dispatcher (made after
// the privacy stage) as its privacy.Destinations.
type erasureDestinations struct{ e *Engine }

func (d erasureDestinations) EraseProfiles(ctx context.Context, id string, profiles []string) []activation.DestinationErasure {
	return d.e.dispatcher.EraseProfiles(ctx, id, profiles)
}
