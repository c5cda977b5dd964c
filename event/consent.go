package event

import (
	"encoding/json"
	"slices"
	"strings"
)

// ConsentUpdated is the name of the track event that states consent:
// properties {"channel": "email", "granted": false} or {"email": false, ...}.
const ConsentUpdated = "Consent Updated"

// Consent channels: the ways of contacting a person that consent is given
// or withdrawn for. Every destination and export names one of them (or
// "none", see the activation package).
const (
	ChannelEmail = "email"
	ChannelSMS   = "sms"
	ChannelPush  = "push"
	ChannelAds   = "ads"
	ChannelWeb   = "web"
)

// ConsentChannels lists the consent channels in their display order.
var ConsentChannels = []string{ChannelEmail, ChannelSMS, ChannelPush, ChannelAds, ChannelWeb}

// MaxConsentStatements bounds the statements of one event (one per channel).
const maxConsentStatements = 5

// ValidConsentChannel reports whether c is one of ConsentChannels.
func ValidConsentChannel(c string) bool { return slices.Contains(ConsentChannels, c) }

// ParseConsentObject parses a JSON object of consent statements
// {"email": false, "sms": true, ...}, as sent to PUT
// /v1/profiles/{ref}/consent. Every key must be a consent channel and every
// value a boolean; at least one statement is required. Errors are
// *FieldError naming the offending key.
func ParseConsentObject(data []byte) (map[string]bool, error) {
	m, ok := decodeObject(data)
	if !ok {
		return nil, &FieldError{Field: "", Reason: "body is not a JSON object of channel: boolean"}
	}
	out, err := consentObject(m, "", true)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fieldErr("", "no consent statement: want e.g. {\"email\": false}")
	}
	return out, nil
}

// consentFrom extracts the consent statements of an event, in increasing
// precedence: context.consent.categoryPreferences (Segment's consent
// object: only keys that are channel names count, other categories are
// ignored), traits.consent (identify, or context.traits), and the
// properties of a "Consent Updated" track event. It returns nil when the
// event states nothing.
func consentFrom(ev *Event) (map[string]bool, error) {
	var out map[string]bool
	merge := func(m map[string]bool) {
		for k, v := range m {
			if out == nil {
				out = make(map[string]bool, len(m))
			}
			out[k] = v
		}
	}
	if c, ok := ev.Context["consent"].(map[string]any); ok {
		if prefs, present := c["categoryPreferences"]; present && prefs != nil {
			obj, ok := prefs.(map[string]any)
			if !ok {
				return nil, fieldErr("context.consent.categoryPreferences", "must be an object")
			}
			m, err := consentObject(obj, "context.consent.categoryPreferences.", false)
			if err != nil {
				return nil, err
			}
			merge(m)
		}
	}
	if v, present := ev.Traits["consent"]; present && v != nil {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, fieldErr("traits.consent", "must be an object of channel: boolean")
		}
		m, err := consentObject(obj, "traits.consent.", true)
		if err != nil {
			return nil, err
		}
		merge(m)
	}
	if ev.Kind == Track && strings.EqualFold(ev.Event, ConsentUpdated) {
		m, err := consentProperties(ev.Properties)
		if err != nil {
			return nil, err
		}
		merge(m)
	}
	return out, nil
}

// consentProperties reads the properties of a Consent Updated event.
func consentProperties(props map[string]any) (map[string]bool, error) {
	if ch, present := props["channel"]; present {
		s, ok := ch.(string)
		if !ok {
			return nil, fieldErr("properties.channel", "must be a string, one of %s", strings.Join(ConsentChannels, ", "))
		}
		c := strings.ToLower(strings.TrimSpace(s))
		if !ValidConsentChannel(c) {
			return nil, fieldErr("properties.channel", "unknown channel %q (want one of %s)", truncate(s), strings.Join(ConsentChannels, ", "))
		}
		g, ok := props["granted"].(bool)
		if !ok {
			return nil, fieldErr("properties.granted", "required boolean with properties.channel")
		}
		for k := range props {
			if k != "channel" && k != "granted" {
				return nil, fieldErr("properties."+truncate(k), "unexpected beside channel and granted")
			}
		}
		return map[string]bool{c: g}, nil
	}
	m, err := consentObject(props, "properties.", true)
	if err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, fieldErr("properties", "%s states no consent: want {\"channel\": \"email\", \"granted\": false} or {\"email\": false, ...}", ConsentUpdated)
	}
	return m, nil
}

// consentObject reads channel: boolean pairs. Keys are trimmed and
// lower-cased. With strict, a key that is not a channel is an error;
// without, it is ignored. A channel with a value that is not a boolean is
// always an error (a boolean given as a string is not accepted either: a
// consent statement must be unambiguous).
func consentObject(m map[string]any, prefix string, strict bool) (map[string]bool, error) {
	var out map[string]bool
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the first error is deterministic
	for _, k := range keys {
		c := strings.ToLower(strings.TrimSpace(k))
		if !ValidConsentChannel(c) {
			if strict {
				return nil, fieldErr(prefix+truncate(k), "unknown consent channel (want one of %s)", strings.Join(ConsentChannels, ", "))
			}
			continue
		}
		g, ok := m[k].(bool)
		if !ok {
			return nil, fieldErr(prefix+truncate(k), "consent must be true or false, got %s", jsonKind(m[k]))
		}
		if out == nil {
			out = make(map[string]bool, maxConsentStatements)
		}
		if prev, dup := out[c]; dup && prev != g {
			return nil, fieldErr(prefix+truncate(k), "contradicts another key for channel %s", c)
		}
		out[c] = g
	}
	return out, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number, int64, float64:
		return "a number"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	return "a non-boolean"
}
