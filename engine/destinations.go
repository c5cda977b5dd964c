package engine

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/aurumcdp/aurum/activation"
	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/store"
)

// destinationKeyID names the data key that seals destination secrets.
func (e *Engine) destinationKeyID() []byte { return e.keys.Hash("system", "destination-secrets") }

// DestinationInfo describes a destination (never its secret).
type DestinationInfo struct {
	Name      string               `json:"name"`
	URL       string               `json:"url"`
	Audiences []string             `json:"audiences"`
	Channel   string               `json:"channel,omitempty"`
	Version   int64                `json:"version"`
	Stats     activation.DestStats `json:"stats"`
}

// PutDestination creates or replaces a webhook destination through the log;
// its worker starts once the record is applied. The secret is sealed.
func (e *Engine) PutDestination(ctx context.Context, d activation.Destination) (DestinationInfo, error) {
	if err := d.Validate(); err != nil {
		return DestinationInfo{}, fmt.Errorf("%w: %w", base.ErrInvalid, err)
	}
	kid := e.destinationKeyID()
	if err := e.keys.Ensure([][]byte{kid}); err != nil {
		return DestinationInfo{}, err
	}
	sealed, err := e.keys.Seal(kid, []byte(d.Secret))
	if err != nil {
		return DestinationInfo{}, err
	}
	seq, err := e.appendControl(ctx, projections.Control{Kind: projections.ControlDestinationPut, Destination: projections.Destination{
		Name: d.Name, URL: d.URL, SecretKey: kid, SecretSealed: sealed, Audiences: d.Audiences, Channel: d.Channel}})
	if err != nil {
		return DestinationInfo{}, err
	}
	if err := e.WaitApplied(ctx, seq); err != nil {
		return DestinationInfo{}, err
	}
	return e.Destination(d.Name)
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
		out = append(out, DestinationInfo{Name: d.Name, URL: d.URL, Audiences: d.Audiences, Channel: d.Channel, Version: d.Version, Stats: stats[d.Name]})
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
// only the leader runs them: elsewhere they are suspended, their shared
// durable consumers and positions kept.
func (e *Engine) reloadDestinations() error {
	e.destMu.Lock()
	defer e.destMu.Unlock()
	e.destsLeader = e.leader()
	if !e.destsLeader {
		return e.dispatcher.Suspend()
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
		dests = append(dests, activation.Destination{Name: d.Name, URL: d.URL, Secret: string(secret), Audiences: d.Audiences,
			Channel: d.Channel, Since: time.UnixMilli(d.Created)})
	}
	return e.dispatcher.Set(dests)
}
