//go:build !arrowcheck

package export_test

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/aurumcdp/aurum/engine/export"
)

// readRows reads a Parquet file with parquet-go's reader into one map per
// row, each value as Arrow's reader gives it (readrows_arrow_test.go, the
// independent reader of `make export-check`): column names from the
// parquet tags, timestamps as UTC text, lists as []string.
func readRows(t *testing.T, path string) []map[string]any {
	t.Helper()
	switch filepath.Base(path) {
	case "profiles.parquet":
		return rowsOf[export.Profile](t, path)
	case "memberships.parquet":
		return rowsOf[export.Membership](t, path)
	case "transitions.parquet":
		return rowsOf[export.Transition](t, path)
	}
	t.Fatalf("readRows: unknown file %s", path)
	return nil
}

func rowsOf[T any](t *testing.T, path string) []map[string]any {
	t.Helper()
	recs, err := parquet.ReadFile[T](path)
	if err != nil {
		t.Fatalf("parquet: read %s: %v", path, err)
	}
	var rows []map[string]any
	for _, rec := range recs {
		v := reflect.ValueOf(rec)
		row := map[string]any{}
		for i := range v.NumField() {
			tag := v.Type().Field(i).Tag.Get("parquet")
			if tag == "" || tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			f := v.Field(i)
			switch {
			case strings.HasPrefix(opts, "timestamp"):
				row[name] = time.UnixMilli(f.Int()).UTC().Format("2006-01-02 15:04:05.000Z")
			case f.Kind() == reflect.Slice:
				list, _ := f.Interface().([]string)
				if list == nil {
					list = []string{}
				}
				row[name] = list
			default:
				row[name] = f.Interface()
			}
		}
		rows = append(rows, row)
	}
	return rows
}
