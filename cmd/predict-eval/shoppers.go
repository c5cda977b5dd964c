package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"

	"github.com/aurumcdp/aurum/predict/propensity"
)

// shoppersNumeric are the numeric columns of online_shoppers_intention.csv.
var shoppersNumeric = []string{"Administrative", "Administrative_Duration", "Informational",
	"Informational_Duration", "ProductRelated", "ProductRelated_Duration", "BounceRates",
	"ExitRates", "PageValues", "SpecialDay"}

// shoppersCodes are its integer-coded categorical columns.
var shoppersCodes = []string{"OperatingSystems", "Browser", "Region", "TrafficType"}

var months = map[string]float64{"Jan": 1, "Feb": 2, "Mar": 3, "Apr": 4, "May": 5, "June": 6,
	"Jul": 7, "Aug": 8, "Sep": 9, "Oct": 10, "Nov": 11, "Dec": 12}

// shoppers is the data set in two encodings of the same rows: Trees keeps
// the numeric columns as they are and the categories as their codes (month
// 1..12, visitor type 0..2); Linear takes log(1 + x) of the counts and
// durations and one-hot columns for every category (codes seen fewer than 50
// times share an "other" column).
type shoppers struct {
	Trees, Linear *propensity.Dataset
}

// readShoppers parses the UCI CSV (header row, 18 columns, Revenue 0/1 or
// FALSE/TRUE).
func readShoppers(r io.Reader) (*shoppers, error) {
	recs, err := csv.NewReader(r).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("shoppers: %w", err)
	}
	if len(recs) < 2 {
		return nil, fmt.Errorf("shoppers: no rows")
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	for _, c := range append(append(slices.Clone(shoppersNumeric), shoppersCodes...), "Month", "VisitorType", "Weekend", "Revenue") {
		if _, ok := col[c]; !ok {
			return nil, fmt.Errorf("shoppers: column %q missing", c)
		}
	}
	rows := recs[1:]
	visitor := map[string]float64{"Returning_Visitor": 0, "New_Visitor": 1, "Other": 2}
	// Category levels for the one-hot columns, in a fixed order.
	type level struct {
		col, val string
	}
	counts := map[level]int{}
	for _, r := range rows {
		for _, c := range append(slices.Clone(shoppersCodes), "Month", "VisitorType") {
			counts[level{c, r[col[c]]}]++
		}
	}
	var levels []level
	for l, n := range counts {
		if n >= 50 {
			levels = append(levels, l)
		}
	}
	slices.SortFunc(levels, func(a, b level) int {
		if a.col != b.col {
			return cmpString(a.col, b.col)
		}
		return cmpString(a.val, b.val)
	})
	tr := &propensity.Dataset{Names: append(append(slices.Clone(shoppersNumeric), shoppersCodes...), "Month", "VisitorType", "Weekend")}
	lin := &propensity.Dataset{}
	for _, c := range shoppersNumeric {
		lin.Names = append(lin.Names, "log1p_"+c)
	}
	lin.Names = append(lin.Names, "Weekend")
	for _, l := range levels {
		lin.Names = append(lin.Names, l.col+"="+l.val)
	}
	for _, c := range append(slices.Clone(shoppersCodes), "Month", "VisitorType") {
		lin.Names = append(lin.Names, c+"=other")
	}
	for i, r := range rows {
		line := i + 2
		var xt, xl []float64
		for _, c := range shoppersNumeric {
			v, err := strconv.ParseFloat(r[col[c]], 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("shoppers: line %d, %s: %q is not a number", line, c, r[col[c]])
			}
			xt = append(xt, v)
			xl = append(xl, math.Log1p(math.Max(v, 0)))
		}
		for _, c := range shoppersCodes {
			v, err := strconv.ParseFloat(r[col[c]], 64)
			if err != nil {
				return nil, fmt.Errorf("shoppers: line %d, %s: %q is not a number", line, c, r[col[c]])
			}
			xt = append(xt, v)
		}
		m, ok := months[r[col["Month"]]]
		if !ok {
			return nil, fmt.Errorf("shoppers: line %d, Month: %q is not a month", line, r[col["Month"]])
		}
		vt, ok := visitor[r[col["VisitorType"]]]
		if !ok {
			return nil, fmt.Errorf("shoppers: line %d, VisitorType: %q unknown", line, r[col["VisitorType"]])
		}
		weekend, err := parseBool(r[col["Weekend"]])
		if err != nil {
			return nil, fmt.Errorf("shoppers: line %d, Weekend: %w", line, err)
		}
		revenue, err := parseBool(r[col["Revenue"]])
		if err != nil {
			return nil, fmt.Errorf("shoppers: line %d, Revenue: %w", line, err)
		}
		xt = append(xt, m, vt, b2f(weekend))
		xl = append(xl, b2f(weekend))
		other := map[string]bool{}
		for _, c := range append(slices.Clone(shoppersCodes), "Month", "VisitorType") {
			other[c] = counts[level{c, r[col[c]]}] < 50
		}
		for _, l := range levels {
			xl = append(xl, b2f(r[col[l.col]] == l.val))
		}
		for _, c := range append(slices.Clone(shoppersCodes), "Month", "VisitorType") {
			xl = append(xl, b2f(other[c]))
		}
		tr.X, tr.Y = append(tr.X, xt), append(tr.Y, revenue)
		lin.X, lin.Y = append(lin.X, xl), append(lin.Y, revenue)
	}
	return &shoppers{Trees: tr, Linear: lin}, nil
}

func parseBool(s string) (bool, error) {
	switch s {
	case "1", "TRUE", "True", "true":
		return true, nil
	case "0", "FALSE", "False", "false":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean", s)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
