package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/internal/check"
)

var statusRE = regexp.MustCompile(`(?m)^\s*\S+  sent (\d+)  (\d+) ev/s  profiles (-?\d+)  merges (\d+)  dead letters (\d+)(?:  audiences( \S+=\d+)+)?$`)

// TestDemo runs `aurum demo` in-process for 6 s on random ports: it prints
// how to query it, the API answers with the printed token while it runs,
// status lines come every second with growing counts, and it exits 0
// keeping the named data directory.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an engine")
	}
	dataDir := t.TempDir()
	var out lockedBuffer
	root := newRoot()
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetArgs([]string{"demo", "--people", "50", "--rate", "300", "--duration", "6s",
		"--data-dir", dataDir, "--http", "127.0.0.1:0", "--nats", "127.0.0.1:-1"})
	exited := make(chan error, 1)
	go func() { exited <- root.ExecuteContext(context.Background()) }()

	var base, token string
	var ref []string
	// The banner is written in several pieces: wait for its last part too,
	// the profile example (read mid-banner on a loaded machine, it was not
	// there yet).
	check.For(t, 15*time.Second, 10*time.Millisecond, func() error {
		s := out.String()
		mb := regexp.MustCompile(`HTTP API  (http://127\.0\.0\.1:\d+)`).FindStringSubmatch(s)
		mt := regexp.MustCompile(`AURUM_ADMIN_TOKEN=(at_\S+)`).FindStringSubmatch(s)
		ref = regexp.MustCompile(`/v1/profiles/(email:\S+)`).FindStringSubmatch(s)
		if mb == nil || mt == nil || ref == nil {
			return fmt.Errorf("no banner with a profile example yet:\n%s", s)
		}
		base, token = mb[1], mt[1]
		return nil
	})
	// The printed example becomes a profile once its event is streamed;
	// a wrong token is refused.
	get := func(tok string) (int, error) {
		req, _ := http.NewRequest("GET", base+"/v1/profiles/"+ref[1], nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	// (The wrong token first: the demo stops after --duration, and on a
	// loaded machine the profile may take seconds to appear.)
	if code, err := get("wrong-token-000000000000"); err != nil || code != 401 {
		t.Fatalf("wrong token: %d %v", code, err)
	}
	check.For(t, 10*time.Second, 20*time.Millisecond, func() error {
		if code, err := get(token); err != nil || code != 200 {
			return fmt.Errorf("GET profile %s: %d %v", ref[1], code, err)
		}
		return nil
	})

	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("demo exited with %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("demo did not stop after --duration 6s:\n%s", out.String())
	}
	s := out.String()
	lines := statusRE.FindAllStringSubmatch(s, -1)
	if len(lines) < 2 {
		t.Fatalf("want at least 2 status lines, got %d:\n%s", len(lines), s)
	}
	if last := lines[len(lines)-1][0]; !strings.Contains(last, "audiences ") || !strings.Contains(last, " high-spenders=") || !strings.Contains(last, " vip=") {
		t.Fatalf("the status line does not show the example audiences' sizes: %s", last)
	}
	// The count of events sent never goes back and grows over the run (a
	// loaded machine may stall the sender for one status interval).
	prev := int64(-1)
	first, _ := strconv.ParseInt(lines[0][1], 10, 64)
	if last, _ := strconv.ParseInt(lines[len(lines)-1][1], 10, 64); last <= first {
		t.Fatalf("events sent did not grow (%d, then %d at the end):\n%s", first, last, s)
	}
	for _, l := range lines {
		sent, _ := strconv.ParseInt(l[1], 10, 64)
		if sent < prev {
			t.Fatalf("events sent went back (%d after %d):\n%s", sent, prev, s)
		}
		if rate, _ := strconv.ParseInt(l[2], 10, 64); rate > 400 {
			t.Fatalf("%d ev/s with --rate 300:\n%s", rate, s)
		}
		prev = sent
	}
	if last := lines[len(lines)-1]; last[3] == "0" || last[3][0] == '-' {
		t.Fatalf("no profiles counted:\n%s", s)
	}
	if !strings.Contains(s, "stopping after") {
		t.Fatalf("no stop message:\n%s", s)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "jetstream")); err != nil {
		t.Fatalf("named data dir not kept: %v", err)
	}
}

// TestDemoTempDirRemoved: without --data-dir the demo works in a fresh
// temporary directory and removes it at exit (kept with --keep).
func TestDemoTempDirRemoved(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an engine")
	}
	for _, keep := range []bool{false, true} {
		var out lockedBuffer
		root := newRoot()
		root.SetOut(&out)
		root.SetErr(io.Discard)
		args := []string{"demo", "--people", "20", "--rate", "0", "--duration", "500ms", "--http", "127.0.0.1:0", "--nats", "127.0.0.1:-1"}
		if keep {
			args = append(args, "--keep")
		}
		root.SetArgs(args)
		if err := root.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("keep=%v: %v\n%s", keep, err, out.String())
		}
		m := regexp.MustCompile(`data dir  (\S+)`).FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("no data dir printed:\n%s", out.String())
		}
		_, err := os.Stat(m[1])
		switch {
		case keep && err != nil:
			t.Fatalf("--keep: data dir %s gone: %v", m[1], err)
		case keep:
			os.RemoveAll(m[1])
		case !errors.Is(err, os.ErrNotExist):
			t.Fatalf("temporary data dir %s not removed: %v", m[1], err)
		}
	}
}

func TestDemoStatusLine(t *testing.T) {
	st := demoStatus{elapsed: 3 * time.Second, sent: 6000, rate: 2000, profiles: 812, merges: 40, deadLetters: 2}
	want := "    3s  sent 6000  2000 ev/s  profiles 812  merges 40  dead letters 2"
	if got := st.line(); got != want {
		t.Fatalf("line = %q, want %q", got, want)
	}
	if !statusRE.MatchString(want) {
		t.Fatal("the test's status pattern does not match a status line")
	}
	// The audiences hook, once set, appends sizes sorted by name.
	st.audiences = map[string]int64{"vip": 12, "churn_risk": 30}
	if got := st.line(); got != want+"  audiences churn_risk=30 vip=12" {
		t.Fatalf("with audiences: %q", got)
	}
	if st.changed(st) || !(demoStatus{sent: 1}).changed(demoStatus{}) {
		t.Fatal("changed")
	}
}

// TestDemoNodes runs `aurum demo --nodes 3` as a real process: three serve
// processes form a cluster, status lines show the leader and 3/3 nodes up;
// after a SIGKILL of one node (its pid is printed) the others mark it down
// and the stream goes on; at --duration the demo stops its nodes and exits 0.
func TestDemoNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three real aurum processes")
	}
	parallelProcess(t)
	var out lockedBuffer
	cmd := exec.Command(aurumBin, "demo", "--nodes", "3", "--people", "100", "--rate", "100", "--duration", "20s",
		"--http", "127.0.0.1:0", "--nats", "127.0.0.1:0")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(2 * time.Minute):
				_ = cmd.Process.Kill()
				<-exited
			}
		}
	})
	var victim int
	sent := func() int {
		m := regexp.MustCompile(`sent (\d+) `).FindAllStringSubmatch(out.String(), -1)
		if m == nil {
			return 0
		}
		n, _ := strconv.Atoi(m[len(m)-1][1])
		return n
	}
	check.For(t, 90*time.Second, 50*time.Millisecond, func() error {
		m := regexp.MustCompile(`n3  HTTP http://\S+  NATS nats://\S+  pid (\d+)`).FindStringSubmatch(out.String())
		if m == nil || !strings.Contains(out.String(), "3/3 nodes up") {
			return fmt.Errorf("no banner and full cluster yet:\n%s", out.String())
		}
		victim, _ = strconv.Atoi(m[1])
		return nil
	})
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	before := sent()
	check.For(t, 30*time.Second, 50*time.Millisecond, func() error {
		if !strings.Contains(out.String(), "2/3 nodes up") || sent() < before+200 {
			return fmt.Errorf("no 2/3 nodes up with the stream going on after the SIGKILL:\n%s", out.String())
		}
		return nil
	})
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("demo exited with %v:\n%s", waitErr, out.String())
		}
	case <-time.After(3 * time.Minute): // --duration, then each node's clean stop
		t.Fatalf("demo did not stop at --duration:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "stopping after") {
		t.Fatalf("no final line:\n%s", out.String())
	}
}
