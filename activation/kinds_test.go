package activation

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzConnectorConfig: any bytes as any kind's config are refused with a
// ConfigError naming a field, or accepted; never a panic.
func FuzzConnectorConfig(f *testing.F) {
	for _, seed := range []string{
		`{"account_sid":"AC1","auth_token":"t","from":"+1","body":"Hi {{.Traits.first_name}}"}`,
		`{"access_token":"x","properties":{"firstname":"first_name"}}`,
		`{"access_token":"x","custom_audiences":{"vip":"1"}}`,
		`{"customer_id":"1","developer_token":"d","client_id":"c","client_secret":"s","refresh_token":"r","user_lists":{"vip":"5"}}`,
		`{"client_id":"c","client_secret":"s","refresh_token":"r","external_id_field":"E__c","campaigns":{"vip":"701000000000001AAA"}}`,
		`{"host":"mx","from":"a@b.c","subject":"s","body":"{{.Email}}","port":25,"tls":"none"}`,
		`{"body":"{{template \"x\"}}"}`, `[]`, `null`, `{"port":"x"}`,
	} {
		for _, k := range KindNames() {
			f.Add(k, []byte(seed))
		}
	}
	f.Fuzz(func(t *testing.T, kind string, config []byte) {
		if kind == KindWebhook || kind == "" {
			return
		}
		d := Destination{Name: "d", Kind: kind, Config: json.RawMessage(config), Audiences: []string{"vip"}}
		err := d.Validate()
		var ce *ConfigError
		if err != nil && (!errors.As(err, &ce) || ce.Field() == "") {
			t.Fatalf("%s %q: %v is not a ConfigError naming a field", kind, config, err)
		}
	})
}
