package match

import "strings"

// BlockKeys returns the blocking keys of r under c, one per rule whose
// traits all have a value, in rule order, duplicates dropped. A key names
// its rule's traits and their normalized values, so it does not depend on
// the order of the rules:
//
//	surname=smith
//	given_name,date_of_birth=john\x1f19560409
//
// Two records are candidates when they share a key.
func BlockKeys(c Config, r Record) []string {
	var keys []string
	var b strings.Builder
	for _, rule := range c.Blocking {
		if len(rule) == 0 {
			continue
		}
		b.Reset()
		ok := true
		for i, t := range rule {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(t)
		}
		b.WriteByte('=')
		for i, t := range rule {
			v := Normalize(c.Fields[t], r[t])
			if v == "" {
				ok = false
				break
			}
			if i > 0 {
				b.WriteByte(0x1f)
			}
			b.WriteString(v)
		}
		if !ok {
			continue
		}
		k := b.String()
		dup := false
		for _, old := range keys {
			if old == k {
				dup = true
				break
			}
		}
		if !dup {
			keys = append(keys, k)
		}
	}
	return keys
}
