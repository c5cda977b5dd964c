package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeConfigFile: every serve flag can come from a YAML file (the
// repository's commented example loads), a flag on the command line wins
// over the file, and an unknown key or a bad value is an error naming the
// file and the key.
func TestServeConfigFile(t *testing.T) {
	parse := func(t *testing.T, args ...string) (*serveFlagsView, error) {
		t.Helper()
		cmd := newServeCmd()
		if err := cmd.ParseFlags(args); err != nil {
			t.Fatal(err)
		}
		cfg, _ := cmd.Flags().GetString("config")
		err := applyConfigFile(cmd.Flags(), cfg)
		fl := cmd.Flags()
		v := &serveFlagsView{}
		v.http, _ = fl.GetString("http")
		v.partitions, _ = fl.GetInt("partitions")
		v.logLevel, _ = fl.GetString("log-level")
		v.publicMetrics, _ = fl.GetBool("public-metrics")
		v.tick = fl.Lookup("tick").Value.String()
		return v, err
	}

	example := filepath.Join("..", "..", "docs", "serve.example.yaml")
	v, err := parse(t, "--config", example)
	if err != nil {
		t.Fatalf("the example config: %v", err)
	}
	if v.http != "127.0.0.1:8080" || v.partitions != 16 || v.logLevel != "info" || v.tick != "1s" {
		t.Errorf("the example config gave %+v", v)
	}

	dir := t.TempDir()
	file := filepath.Join(dir, "aurum.yaml")
	if err := os.WriteFile(file, []byte("http: 0.0.0.0:9000\npartitions: 8\nlog-level: debug\npublic-metrics: true\ntick: 250ms\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err = parse(t, "--config", file, "--partitions", "32")
	if err != nil {
		t.Fatal(err)
	}
	if v.http != "0.0.0.0:9000" || v.partitions != 32 || v.logLevel != "debug" || !v.publicMetrics || v.tick != "250ms" {
		t.Errorf("file + flags gave %+v, want the file's values and --partitions 32", v)
	}

	for content, want := range map[string]string{
		"htp: 0.0.0.0:9000\n":  `"htp" is not a setting`,
		"partitions: many\n":   "partitions:",
		"http: [a, b]\n":       "http: want a single value",
		"- just\n- a list\n":   "not a YAML map",
		"config: other.yaml\n": `"config" is not a setting`,
	} {
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := parse(t, "--config", file)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), file) {
			t.Errorf("config %q: %v, want an error naming %s and %q", content, err, file, want)
		}
	}
	if _, err := parse(t, "--config", filepath.Join(dir, "nope.yaml")); err == nil || !strings.Contains(err.Error(), "--config") {
		t.Errorf("a missing config file: %v", err)
	}
}

type serveFlagsView struct {
	http, logLevel, tick string
	partitions           int
	publicMetrics        bool
}
