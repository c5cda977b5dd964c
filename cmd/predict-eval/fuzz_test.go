package main

import (
	"strings"
	"testing"
)

// FuzzReadShoppers: any input gives rows or an error, never a panic, and
// every row has its encoding's width.
func FuzzReadShoppers(f *testing.F) {
	head := "Administrative,Administrative_Duration,Informational,Informational_Duration,ProductRelated,ProductRelated_Duration,BounceRates,ExitRates,PageValues,SpecialDay,Month,OperatingSystems,Browser,Region,TrafficType,VisitorType,Weekend,Revenue\n"
	f.Add(head + "0,0,0,0,1,0,0.2,0.2,0,0,Feb,1,1,1,1,Returning_Visitor,FALSE,0\n")
	f.Add(head + "1,2,3,4,5,6,0.1,0.1,9,0,Nov,2,2,3,4,New_Visitor,TRUE,1\n")
	f.Add("a,b\n1,2\n")
	f.Fuzz(func(t *testing.T, in string) {
		s, err := readShoppers(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, d := range []struct {
			names int
			rows  [][]float64
		}{{len(s.Trees.Names), s.Trees.X}, {len(s.Linear.Names), s.Linear.X}} {
			for i, r := range d.rows {
				if len(r) != d.names {
					t.Fatalf("row %d has %d values, %d names", i, len(r), d.names)
				}
			}
		}
	})
}

// FuzzReadOtto: any input gives sessions or an error, never a panic.
func FuzzReadOtto(f *testing.F) {
	f.Add(`{"session": 0, "events": [{"aid": 1, "ts": 1659304800025, "type": "clicks"}, {"aid": 2, "ts": 1659304900000, "type": "orders"}]}` + "\n")
	f.Add("{}\n{\"session\": 1}\n")
	f.Fuzz(func(t *testing.T, in string) {
		users, err := readOtto(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, u := range users {
			for _, it := range u {
				if it.Item == "" || it.User == "" {
					t.Fatalf("interaction without item or user: %+v", it)
				}
			}
		}
	})
}
