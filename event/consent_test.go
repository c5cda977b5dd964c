package event

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseConsent(t *testing.T) {
	tests := []struct {
		name string
		kind Kind
		body string
		want map[string]bool
	}{
		{"no statement", Track, `{"userId":"u","event":"Order Completed","properties":{"email":false}}`, nil},
		{"identify traits", Identify, `{"userId":"u","traits":{"consent":{"email":false,"SMS":true}}}`,
			map[string]bool{"email": false, "sms": true}},
		{"context traits", Identify, `{"userId":"u","context":{"traits":{"consent":{"push":true}}}}`,
			map[string]bool{"push": true}},
		{"consent updated, channel form", Track, `{"userId":"u","event":"Consent Updated","properties":{"channel":" Email ","granted":false}}`,
			map[string]bool{"email": false}},
		{"consent updated, map form", Track, `{"userId":"u","event":"Consent Updated","properties":{"email":false,"ads":true}}`,
			map[string]bool{"email": false, "ads": true}},
		{"consent updated, any case", Track, `{"userId":"u","event":"consent updated","properties":{"web":true}}`,
			map[string]bool{"web": true}},
		{"segment categoryPreferences: channel keys only", Page, `{"anonymousId":"a","context":{"consent":{"categoryPreferences":{"Advertising":true,"Analytics":false,"Email":false,"ads":true}}}}`,
			map[string]bool{"email": false, "ads": true}},
		{"categoryPreferences null", Page, `{"anonymousId":"a","context":{"consent":{"categoryPreferences":null}}}`, nil},
		{"properties win over traits win over context", Track, `{"userId":"u","event":"Consent Updated","traits":{"consent":{"email":true,"sms":false}},"context":{"consent":{"categoryPreferences":{"email":true,"sms":true,"push":false}}},"properties":{"email":false}}`,
			map[string]bool{"email": false, "sms": false, "push": false}},
		{"traits consent null", Identify, `{"userId":"u","traits":{"consent":null}}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := Parse([]byte(tt.body), tt.kind, testOpts())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ev.Consent, tt.want) {
				t.Errorf("consent = %v, want %v", ev.Consent, tt.want)
			}
			checkAccepted(t, ev, testOpts())
		})
	}
}

func TestParseConsentErrors(t *testing.T) {
	tests := []struct {
		name  string
		kind  Kind
		body  string
		field string
	}{
		{"unknown channel in traits", Identify, `{"userId":"u","traits":{"consent":{"fax":false}}}`, "traits.consent.fax"},
		{"string for boolean", Identify, `{"userId":"u","traits":{"consent":{"email":"false"}}}`, "traits.consent.email"},
		{"number for boolean", Identify, `{"userId":"u","traits":{"consent":{"sms":0}}}`, "traits.consent.sms"},
		{"traits consent not object", Identify, `{"userId":"u","traits":{"consent":"yes"}}`, "traits.consent"},
		{"contradicting keys", Identify, `{"userId":"u","traits":{"consent":{"email":true,"EMAIL":false}}}`, "traits.consent.email"},
		{"categoryPreferences non-boolean channel", Page, `{"anonymousId":"a","context":{"consent":{"categoryPreferences":{"email":"no"}}}}`, "context.consent.categoryPreferences.email"},
		{"categoryPreferences not object", Page, `{"anonymousId":"a","context":{"consent":{"categoryPreferences":[]}}}`, "context.consent.categoryPreferences"},
		{"consent updated unknown channel", Track, `{"userId":"u","event":"Consent Updated","properties":{"channel":"fax","granted":false}}`, "properties.channel"},
		{"consent updated channel not string", Track, `{"userId":"u","event":"Consent Updated","properties":{"channel":1,"granted":false}}`, "properties.channel"},
		{"consent updated granted missing", Track, `{"userId":"u","event":"Consent Updated","properties":{"channel":"email"}}`, "properties.granted"},
		{"consent updated granted string", Track, `{"userId":"u","event":"Consent Updated","properties":{"channel":"email","granted":"no"}}`, "properties.granted"},
		{"consent updated extra key", Track, `{"userId":"u","event":"Consent Updated","properties":{"channel":"email","granted":false,"sms":true}}`, "properties.sms"},
		{"consent updated map unknown key", Track, `{"userId":"u","event":"Consent Updated","properties":{"email":false,"fax":true}}`, "properties.fax"},
		{"consent updated map non-boolean", Track, `{"userId":"u","event":"Consent Updated","properties":{"email":null}}`, "properties.email"},
		{"consent updated empty", Track, `{"userId":"u","event":"Consent Updated","properties":{}}`, "properties"},
		{"consent updated no properties", Track, `{"userId":"u","event":"Consent Updated"}`, "properties"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.body), tt.kind, testOpts())
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want *FieldError", err)
			}
			if fe.Field != tt.field || fe.Reason == "" {
				t.Errorf("field = %q (%s), want %q", fe.Field, fe.Reason, tt.field)
			}
		})
	}
}

func TestParseConsentObject(t *testing.T) {
	got, err := ParseConsentObject([]byte(`{"email":false," Sms ":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]bool{"email": false, "sms": true}; !reflect.DeepEqual(got, want) {
		t.Errorf("consent = %v, want %v", got, want)
	}
	for body, field := range map[string]string{
		`{"fax":true}`:      "fax",
		`{"email":1}`:       "email",
		`{}`:                "",
		`[]`:                "",
		`{"email":true} {}`: "",
	} {
		_, err := ParseConsentObject([]byte(body))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("%s: err = %v, want a FieldError on %q", body, err, field)
		}
	}
}

func FuzzParseConsentObject(f *testing.F) {
	f.Add([]byte(`{"email":false,"sms":true}`))
	f.Add([]byte(`{"fax":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseConsentObject(data)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			return
		}
		if len(m) == 0 {
			t.Fatal("accepted without a statement")
		}
		for c := range m {
			if !ValidConsentChannel(c) {
				t.Fatalf("accepted channel %q", c)
			}
		}
	})
}
