//go:build arrowcheck

package export_test

import (
	"context"
	"encoding/json"
	"io"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// readRows reads a Parquet file with Apache Arrow's reader (an independent
// implementation: the files are written with parquet-go) into one map per
// row, each value as Arrow marshals it to JSON.
func readRows(t *testing.T, path string) []map[string]any {
	t.Helper()
	pf, err := file.OpenParquetFile(path, false)
	if err != nil {
		t.Fatalf("arrow: open %s: %v", path, err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 1024}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatalf("arrow: read %s: %v", path, err)
	}
	defer tbl.Release()
	tr := array.NewTableReader(tbl, 1024)
	defer tr.Release()
	var rows []map[string]any
	for tr.Next() {
		rec := tr.RecordBatch()
		for i := range int(rec.NumRows()) {
			row := map[string]any{}
			for c, col := range rec.Columns() {
				v := col.GetOneForMarshal(i)
				if raw, ok := v.(json.RawMessage); ok {
					var list []string
					if err := json.Unmarshal(raw, &list); err != nil {
						t.Fatalf("column %s: %v", rec.ColumnName(c), err)
					}
					v = list
				}
				row[rec.ColumnName(c)] = v
			}
			rows = append(rows, row)
		}
	}
	if err := tr.Err(); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return rows
}
