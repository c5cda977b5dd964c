package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/internal/check"
)

// aurumCLI runs the aurum binary with args against node n and returns its
// output and exit code.
func aurumCLI(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(aurumBin, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("aurum %v: %v", args, err)
	}
	return string(out), 0
}

// TestFirstStartTokenAndCLI: without AURUM_ADMIN_TOKEN a node generates an
// admin token on first start, prints it once and keeps only its hash; the
// CLI (source add, profile get) works with it after a restart.
func TestFirstStartTokenAndCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real aurum process")
	}
	parallelProcess(t)
	n := startNodeWith(t, &node{dataDir: t.TempDir(), noToken: true})
	var m []string
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		if m = regexp.MustCompile(`AURUM_ADMIN_TOKEN=(\S+)`).FindStringSubmatch(n.stdout.String()); m == nil {
			return fmt.Errorf("first start printed no admin token; stdout:\n%s", n.stdout.String())
		}
		return nil
	})
	token := m[1]
	if found := scanDir(t, n.dataDir, token); found[token] != "" {
		t.Fatalf("the admin token is stored in plain text in %s", found[token])
	}
	n.stop()
	n.restart()
	if strings.Contains(n.stdout.String(), "AURUM_ADMIN_TOKEN=") {
		t.Fatalf("a restart printed a token again:\n%s", n.stdout.String())
	}

	env := []string{"AURUM_SERVER=" + n.HTTP, "AURUM_ADMIN_TOKEN=" + token, "HOME=" + t.TempDir()}
	out, code := aurumCLI(t, env, "source", "add", "web")
	if code != 0 {
		t.Fatalf("aurum source add: exit %d: %s", code, out)
	}
	var src struct {
		Name     string `json:"name"`
		WriteKey string `json:"write_key"`
	}
	if err := json.Unmarshal([]byte(out), &src); err != nil || src.WriteKey == "" {
		t.Fatalf("aurum source add printed %q (%v)", out, err)
	}
	if out, code := aurumCLI(t, env, "source", "add", "web"); code == 0 || !strings.Contains(out, "409") {
		t.Fatalf("adding a source twice: exit %d: %s", code, out)
	}
	if out, code := aurumCLI(t, []string{"AURUM_SERVER=" + n.HTTP, "AURUM_ADMIN_TOKEN=wrong-token-0000000000"}, "source", "list"); code == 0 || !strings.Contains(out, "401") {
		t.Fatalf("a wrong token: exit %d: %s", code, out)
	}

	n.mustJSON("POST", "/v1/identify", map[string]any{"userId": "42", "traits": map[string]any{"email": "Ann@Example.com"}},
		writeKeyAuth(src.WriteKey), 200, nil)
	check.For(t, 10*time.Second, 20*time.Millisecond, func() error {
		if out, code = aurumCLI(t, env, "profile", "get", "email:ann@example.com", "--output", "json"); code != 0 {
			return fmt.Errorf("exit %d: %s", code, out)
		}
		return nil
	})
	if code != 0 || !strings.Contains(out, `"user_id"`) || !strings.Contains(out, `"ann@example.com"`) {
		t.Fatalf("aurum profile get: exit %d: %s", code, out)
	}
	if out, code := aurumCLI(t, env, "profile", "get", "email:nobody@example.com"); code == 0 || !strings.Contains(out, "404") {
		t.Fatalf("aurum profile get of an unknown email: exit %d: %s", code, out)
	}
	if out, code := aurumCLI(t, env, "serve", "--fsync", "sometimes", "--data-dir", t.TempDir()); code == 0 || !strings.Contains(out, "--fsync") {
		t.Fatalf("aurum serve with a bad flag value: exit %d: %s", code, out)
	}

	// A lost token: a restart with a new $AURUM_ADMIN_TOKEN. The new one
	// works, the generated one does not, and the node says so (it
	// replaced it silently before).
	if strings.Contains(n.logText(), "replaces the one generated") {
		t.Fatalf("a start without a given token warned of a replaced one:\n%s", n.logText())
	}
	n.stop()
	n.noToken = false
	n.restart()
	if !strings.Contains(n.logText(), "replaces the one generated on first start") {
		t.Errorf("a given admin token replaced the generated one without a word:\n%s", n.logText())
	}
	if out, code := aurumCLI(t, env, "source", "list"); code == 0 || !strings.Contains(out, "401") {
		t.Errorf("the generated token after it was replaced: exit %d: %s", code, out)
	}
	env[1] = "AURUM_ADMIN_TOKEN=" + testAdminToken
	if out, code := aurumCLI(t, env, "source", "list"); code != 0 {
		t.Errorf("the given token: exit %d: %s", code, out)
	}
}
