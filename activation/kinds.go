package activation

import (
	"maps"
	"slices"

	"github.com/aurumcdp/aurum/activation/connector"
	"github.com/aurumcdp/aurum/activation/connectors/google"
	"github.com/aurumcdp/aurum/activation/connectors/hubspot"
	"github.com/aurumcdp/aurum/activation/connectors/meta"
	"github.com/aurumcdp/aurum/activation/connectors/salesforce"
	"github.com/aurumcdp/aurum/activation/connectors/sms"
	"github.com/aurumcdp/aurum/activation/connectors/smtp"
)

// Kinds returns the connector kinds by name (KindWebhook is not one).
func Kinds() map[string]connector.Kind {
	out := map[string]connector.Kind{}
	for _, k := range []connector.Kind{google.Kind, hubspot.Kind, meta.Kind, salesforce.Kind, sms.Kind, smtp.Kind} {
		out[k.Name] = k
	}
	return out
}

// KindNames lists every destination kind, KindWebhook included, sorted.
func KindNames() []string {
	return slices.Sorted(func(yield func(string) bool) {
		if !yield(KindWebhook) {
			return
		}
		for k := range maps.Keys(Kinds()) {
			if !yield(k) {
				return
			}
		}
	})
}
