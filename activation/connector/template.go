package connector

import (
	"fmt"
	"strings"
	"text/template"
)

// MaxTemplate bounds a message template's length.
const MaxTemplate = 64 << 10

// Template is a message template over a Change: Go text/template syntax,
// with .Audience, .ProfileID, .Email, .Phone (the newest) and .Traits
// (e.g. {{.Traits.first_name}}); a missing trait is empty.
type Template struct{ t *template.Template }

// ParseTemplate parses the template of config field name.
func ParseTemplate(field, text string) (*Template, error) {
	if strings.TrimSpace(text) == "" {
		return nil, Fieldf(field, "required")
	}
	if len(text) > MaxTemplate {
		return nil, Fieldf(field, "longer than %d bytes", MaxTemplate)
	}
	t, err := template.New(field).Option("missingkey=zero").Parse(text)
	if err != nil {
		return nil, Fieldf(field, "%v", err)
	}
	return &Template{t: t}, nil
}

// Render renders the template for c.
func (t *Template) Render(c Change) (string, error) {
	traits := c.Traits
	if traits == nil {
		traits = map[string]any{}
	}
	data := struct {
		Audience, ProfileID, Email, Phone string
		Traits                            map[string]any
	}{c.Audience, c.ProfileID, Last(c.Emails), Last(c.Phones), traits}
	var b strings.Builder
	if err := t.t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("template: %w", err)
	}
	return strings.ReplaceAll(b.String(), "<no value>", ""), nil
}

// Last is the last value of vs ("" when empty).
func Last(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}
