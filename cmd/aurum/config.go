package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// applyConfigFile sets the flags of fs from a YAML file of flag names and
// values (data-dir: /var/lib/aurum, partitions: 16, ...). A flag given on
// the command line wins over the file. A key that is no flag of fs, a
// value that is not a scalar, or one the flag refuses is an error naming
// the file and the key. Every flag of fs can come from the file (config
// itself excepted), flags added later included: it walks the flag set.
func applyConfigFile(fs *pflag.FlagSet, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var settings map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&settings); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("--config %s: not a YAML map of flag names to values: %w", path, err)
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f := fs.Lookup(k)
		if f == nil || k == "config" || k == "help" {
			return fmt.Errorf("--config %s: %q is not a setting (the settings are the flags of aurum serve --help, without --)", path, k)
		}
		if f.Changed { // the command line wins
			continue
		}
		var v string
		switch x := settings[k].(type) {
		case string, bool, int, int64, uint64, float64:
			v = fmt.Sprint(x)
		case nil:
			continue
		default:
			return fmt.Errorf("--config %s: %s: want a single value, got %v", path, k, x)
		}
		if err := fs.Set(k, v); err != nil {
			return fmt.Errorf("--config %s: %s: %w", path, k, err)
		}
	}
	return nil
}
