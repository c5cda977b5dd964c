package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

// TestVersion: aurum version and aurum --version print the same line, with
// the build's commit: vcs.revision (marked +modified), else the one the
// linker set (make build), else a note how to get one.
func TestVersion(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: "v1.2.3"}}
	if got, want := formatVersion(bi, ""), "v1.2.3 commit unknown (make build records it) go1.26"; got != want {
		t.Errorf("no commit: %q, want %q", got, want)
	}
	if got, want := formatVersion(bi, "abc123"), "v1.2.3 commit abc123 go1.26"; got != want {
		t.Errorf("linked commit: %q, want %q", got, want)
	}
	bi.Settings = []debug.BuildSetting{{Key: "vcs.revision", Value: "f00d"}, {Key: "vcs.time", Value: "2026-12-02T15:00:00Z"}, {Key: "vcs.modified", Value: "true"}}
	if got, want := formatVersion(bi, "abc123"), "v1.2.3 commit f00d+modified (2026-12-02T15:00:00Z) go1.26"; got != want {
		t.Errorf("vcs commit: %q, want %q", got, want)
	}

	out, _, err := runInProcess(t, nil, "version")
	if err != nil || !strings.HasPrefix(out, "aurum ") || !strings.Contains(out, " commit ") {
		t.Fatalf("aurum version: %v %q", err, out)
	}
	flag, _, err := runInProcess(t, nil, "--version")
	if err != nil || flag != out {
		t.Fatalf("aurum --version: %v %q, want %q", err, flag, out)
	}
}
