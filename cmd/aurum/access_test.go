package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/auth"
)

func bearerAuth(tok string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

// TestAccessCLI runs the real binary: token add/list/revoke and user
// add/list/rm through the CLI, a TOTP login, role checks, the state after a
// restart, and that no secret reaches the process's logs (stderr) or its
// data directory in plain text.
func TestAccessCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real aurum process")
	}
	parallelProcess(t)
	n := startNode(t, t.TempDir(), "--log-level", "debug")
	env := []string{"AURUM_SERVER=" + n.HTTP, "AURUM_ADMIN_TOKEN=" + testAdminToken, "HOME=" + t.TempDir()}
	cli := func(stdin string, args ...string) string {
		t.Helper()
		out, code := aurumCLIStdin(t, env, stdin, args...)
		if code != 0 {
			t.Fatalf("aurum %v: exit %d: %s", args, code, out)
		}
		return out
	}

	// token add prints the secret once; list never shows it.
	var tok struct {
		ID    string `json:"id"`
		Name  string `json:"name"`
		Role  string `json:"role"`
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(cli("", "token", "add", "--name", "ci", "--role", "editor", "--expires", "720h")), &tok); err != nil ||
		!strings.HasPrefix(tok.Token, auth.TokenPrefix) || tok.Role != "editor" {
		t.Fatalf("token add: %+v %v", tok, err)
	}
	if out := cli("", "token", "list"); !strings.Contains(out, tok.ID) || strings.Contains(out, tok.Token) {
		t.Fatalf("token list: %s", out)
	}
	if out, code := aurumCLIStdin(t, env, "", "token", "add", "--name", "x", "--role", "root"); code == 0 || !strings.Contains(out, "role") {
		t.Fatalf("token add with a bad role: exit %d: %s", code, out)
	}
	// The editor token creates a source; it may not list tokens.
	var src struct {
		WriteKey string `json:"write_key"`
	}
	n.mustJSON("POST", "/v1/sources", map[string]string{"name": "web"}, bearerAuth(tok.Token), http.StatusCreated, &src)
	n.mustJSON("GET", "/v1/tokens", nil, bearerAuth(tok.Token), http.StatusForbidden, nil)
	n.mustJSON("GET", "/v1/sources", nil, bearerAuth(src.WriteKey), http.StatusUnauthorized, nil)
	n.mustJSON("POST", "/v1/track", map[string]string{"userId": "u1", "event": "E"}, writeKeyAuth(src.WriteKey), http.StatusOK, nil)
	// The CLI works with the API token too.
	envTok := append(append([]string(nil), env[:2]...), "AURUM_ADMIN_TOKEN="+tok.Token)
	if out, code := aurumCLIStdin(t, envTok, "", "source", "list"); code != 0 || !strings.Contains(out, "web") {
		t.Fatalf("source list with the editor token: exit %d: %s", code, out)
	}

	// user add reads the password from stdin (or a file), never a flag.
	const pw = "correct horse battery staple"
	var user struct {
		URI string `json:"otpauth_uri"`
	}
	if err := json.Unmarshal([]byte(cli(pw+"\n", "user", "add", "--name", "ada", "--role", "viewer")), &user); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cli("", "user", "add", "--name", "bob", "--role", "privacy", "--password-file", pwFile)
	if out := cli("", "user", "list", "--output", "json"); !strings.Contains(out, `"ada"`) || !strings.Contains(out, `"bob"`) || strings.Contains(out, "argon2") {
		t.Fatalf("user list: %s", out)
	}
	if out, code := aurumCLIStdin(t, env, "short\n", "user", "add", "--name", "cy", "--role", "viewer"); code == 0 || !strings.Contains(out, "password") {
		t.Fatalf("user add with a short password: exit %d: %s", code, out)
	}
	secret, err := auth.TOTPSecretFromURI(user.URI)
	if err != nil {
		t.Fatal(err)
	}
	code := auth.TOTP(secret, time.Now())
	n.mustJSON("POST", "/v1/login", map[string]string{"name": "ada", "password": "wrong password!!", "code": code}, nil, http.StatusUnauthorized, nil)
	var sess struct {
		Token string `json:"token"`
		Role  string `json:"role"`
	}
	n.mustJSON("POST", "/v1/login", map[string]string{"name": "ada", "password": pw, "code": code}, nil, http.StatusOK, &sess)
	if sess.Role != "viewer" {
		t.Fatalf("session role %q", sess.Role)
	}
	n.mustJSON("GET", "/v1/audiences", nil, bearerAuth(sess.Token), http.StatusOK, nil)
	n.mustJSON("POST", "/v1/login", map[string]string{"name": "ada", "password": pw, "code": code}, nil, http.StatusUnauthorized, nil)

	// Revoke; then a restart keeps tokens, sessions and users as they were.
	other := struct {
		Token string `json:"token"`
	}{}
	_ = json.Unmarshal([]byte(cli("", "token", "add", "--name", "ops", "--role", "viewer")), &other)
	if out := cli("", "token", "revoke", tok.ID); !strings.Contains(out, tok.ID) {
		t.Fatalf("revoke: %s", out)
	}
	n.mustJSON("GET", "/v1/sources", nil, bearerAuth(tok.Token), http.StatusUnauthorized, nil)
	cli("", "user", "rm", "bob")
	n.stop()
	n.restart()
	n.mustJSON("GET", "/v1/sources", nil, bearerAuth(tok.Token), http.StatusUnauthorized, nil)
	n.mustJSON("GET", "/v1/sources", nil, bearerAuth(other.Token), http.StatusOK, nil)
	n.mustJSON("GET", "/v1/audiences", nil, bearerAuth(sess.Token), http.StatusOK, nil)
	if out := cli("", "user", "list"); !strings.HasPrefix(out, "NAME") || strings.Contains(out, "bob ") || !strings.Contains(out, "ada ") {
		t.Fatalf("users after restart: %s", out)
	}

	// No secret in the process's logs, nor in plain text on disk.
	logs := n.logText() + n.stdout.String()
	if !strings.Contains(logs, "login failed") || !strings.Contains(logs, "token created") {
		t.Fatalf("the node's log lacks the access events; captured:\n%s", logs)
	}
	u32 := strings.SplitN(strings.SplitN(user.URI, "secret=", 2)[1], "&", 2)[0]
	secrets := map[string]string{"admin token": testAdminToken, "editor token": tok.Token, "viewer token": other.Token,
		"session": sess.Token, "password": pw, "totp secret": u32, "write key": src.WriteKey}
	for name, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the node's log shows the %s", name)
		}
	}
	// A 6-digit code may occur by chance inside numbers; a logged code would be a value.
	for _, form := range []string{`"` + code + `"`, "=" + code + " ", "=" + code + "\n"} {
		if strings.Contains(logs, form) {
			t.Errorf("the node's log shows the TOTP code as %q", form)
		}
	}
	found := scanDir(t, n.dataDir, tok.Token, other.Token, sess.Token, pw, u32, string(secret), src.WriteKey)
	for s, path := range found {
		t.Errorf("a secret (%.8s...) is stored in plain text in %s", s, path)
	}
}

// aurumCLIStdin runs the binary with stdin and returns its combined output
// and exit code.
func aurumCLIStdin(t *testing.T, env []string, stdin string, args ...string) (string, int) {
	t.Helper()
	cmd := execAurum(env, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil {
		t.Fatalf("aurum %v: %v", args, err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

func execAurum(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(aurumBin, args...)
	cmd.Env = env
	return cmd
}
