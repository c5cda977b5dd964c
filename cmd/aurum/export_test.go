package main

import (
	"net/http"
	"testing"

	"github.com/aurumcdp/aurum/api"
)

// TestExportSummary: the summary of aurum audience export says how many
// members were exported and how many were left out, and why.
func TestExportSummary(t *testing.T) {
	tr := http.Header{}
	tr.Set(api.TrailerExported, "3")
	tr.Set(api.TrailerConsentExcluded, "1")
	tr.Set(api.TrailerNoAddressExcluded, "4")
	if got, want := exportSummary("buyers", "email", tr), "aurum: buyers for channel email: 3 exported; left out: 1 without consent for email, 4 without an address for email"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
	tr.Set(api.TrailerConsentExcluded, "0")
	tr.Set(api.TrailerNoAddressExcluded, "0")
	if got, want := exportSummary("buyers", "none", tr), "aurum: buyers for channel none: 3 exported; nobody left out"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
}
