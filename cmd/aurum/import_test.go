package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/internal/check"
)

// runAurum runs the aurum binary and returns its exit code, stdout and
// stderr.
func runAurum(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(aurumBin, args...)
	cmd.Env = append(os.Environ(), "AURUM_ADMIN_TOKEN="+testAdminToken)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run aurum %v: %v", args, err)
	}
	return code, stdout.String(), stderr.String()
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// importSummary parses the summary line of aurum import.
var importSummary = regexp.MustCompile(`imported (\d+) file\(s\): (\d+) rows, (\d+) accepted, (\d+) duplicates, (\d+) rejected`)

func checkSummary(t *testing.T, stdout string, files, rows, accepted, duplicates, rejected int) {
	t.Helper()
	m := importSummary.FindStringSubmatch(stdout)
	want := fmt.Sprint(files, rows, accepted, duplicates, rejected)
	if m == nil || strings.Join(m[1:], " ") != want {
		t.Errorf("summary %q, want files rows accepted duplicates rejected = %s", stdout, want)
	}
}

// reasonLine is one line of the --reasons file.
type reasonLine struct {
	File   string `json:"file"`
	Line   int    `json:"line"`
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

func readReasons(t *testing.T, path string) []reasonLine {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil // created on the first rejected row only
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []reasonLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r reasonLine
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("reasons file line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// TestImportBadInput runs `aurum import` against a real node: bad rows are
// counted, reported with their line numbers and make the exit status 2;
// re-importing adds nothing; JSON, NDJSON and XML import; a bad format is a
// clear error.
func TestImportBadInput(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real aurum process")
	}
	parallelProcess(t)
	n := startNode(t, t.TempDir())
	crmKey := n.createSource("crm")
	dir := t.TempDir()
	markers := 0
	// applied sends a marker event through the API after the imports and
	// waits for it: the imports' events are on the log before it.
	applied := func() {
		t.Helper()
		markers++
		user := fmt.Sprintf("imp-marker-%d", markers)
		n.mustJSON("POST", "/v1/track", map[string]any{"userId": user, "event": "Marker"}, writeKeyAuth(crmKey), http.StatusOK, nil)
		check.For(t, 20*time.Second, 20*time.Millisecond, func() error {
			_, err := n.profile("user_id:" + user)
			return err
		})
	}
	imp := func(reasons string, args ...string) (int, string, string) {
		t.Helper()
		return runAurum(t, append([]string{"import", "--server", n.HTTP, "--source", "crm", "--no-progress",
			"--reasons", reasons}, args...)...)
	}

	csv := writeFile(t, dir, "crm.csv", strings.Join([]string{
		"email,crm_id,first_name,signup",
		"ann@example.com,C1,Ann,2024-01-02T10:00:00Z", // 2: ok
		"bob@example.com,C2,Bob,not-a-date",           // 3: bad timestamp
		"cid@example.com,C3,Cid",                      // 4: too few columns
		"dee@example.com,C4,Dee,2024-01-03,extra",     // 5: too many columns
		",,NoIds,2024-01-04T10:00:00Z",                // 6: no identifier (the server rejects it)
		`eve@example.com,C5,"Eve`,                     // 7-8: a quoted field spanning two lines
		`Marie",2024-01-05`,
		"ann@example.com,C1,Ann,2024-01-02T10:00:00Z", // 9: the same row again (another messageId)
	}, "\n")+"\n")
	csvArgs := []string{"--id", "email=email", "--id", "crm_id=crm_id", "--trait", "first_name=first_name",
		"--timestamp", "signup", csv}
	wantReasons := []struct {
		line          int
		field, reason string
	}{
		{3, "", "bad timestamp"},
		{4, "", "3 fields, header has 4"},
		{5, "", "5 fields, header has 4"},
		{6, "userId", "neither userId"},
	}

	for round := 1; round <= 2; round++ {
		reasons := filepath.Join(dir, fmt.Sprintf("reasons-%d.ndjson", round))
		code, stdout, stderr := imp(reasons, csvArgs...)
		if code != 2 {
			t.Fatalf("round %d: exit %d, want 2 (rows rejected)\nstdout: %s\nstderr: %s", round, code, stdout, stderr)
		}
		// Accepted counts the new rows; on the second round the node holds
		// them already: duplicates.
		if round == 1 {
			checkSummary(t, stdout, 1, 7, 3, 0, 4)
		} else {
			checkSummary(t, stdout, 1, 7, 0, 3, 4)
		}
		if !strings.Contains(stdout, reasons) {
			t.Errorf("summary %q does not name the reasons file", stdout)
		}
		got := readReasons(t, reasons)
		if len(got) != len(wantReasons) {
			t.Fatalf("round %d: reasons %+v, want %d", round, got, len(wantReasons))
		}
		for i, w := range wantReasons {
			r := got[i]
			if r.File != csv || r.Line != w.line || r.Field != w.field || !strings.Contains(r.Reason, w.reason) {
				t.Errorf("reason %d = %+v, want line %d field %q reason with %q", i, r, w.line, w.field, w.reason)
			}
		}
		applied()
		for ref, want := range map[string]float64{"email:ann@example.com": 2, "crm_id:C1": 2, "email:eve@example.com": 1} {
			p, err := n.profile(ref)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if got := p["stats"].(map[string]any)["total_events"]; got != want {
				t.Errorf("round %d: %s has %v events, want %v", round, ref, got, want)
			}
			if ref == "email:eve@example.com" && p["traits"].(map[string]any)["first_name"] != "Eve\nMarie" {
				t.Errorf("eve's traits %v, want the two-line first_name", p["traits"])
			}
		}
		for _, ref := range []string{"email:bob@example.com", "email:cid@example.com", "crm_id:C4"} {
			if _, err := n.profile(ref); err == nil || !strings.Contains(err.Error(), "404") {
				t.Errorf("round %d: %s: %v, want 404", round, ref, err)
			}
		}
	}

	t.Run("formats", func(t *testing.T) {
		files := []struct {
			name, content, format string
			rows, rejected        int
			badLine               int
			users                 []string
		}{
			{"events.json", `[{"type":"track","userId":"fj-1","event":"J"},{"type":"identify","userId":"fj-2"}]`, "", 2, 0, 0, []string{"fj-1", "fj-2"}},
			{"events.jsonl", `{"type":"track","userId":"fn-1","event":"N"}` + "\n" + `{not json}` + "\n" +
				`{"type":"page","userId":"fn-2","name":"Home"}` + "\n", "", 3, 1, 2, []string{"fn-1", "fn-2"}},
			{"export.data", `{"batch":[{"type":"identify","userId":"fb-1"}]}`, "json", 1, 0, 0, []string{"fb-1"}},
			{"events.xml", `<?xml version="1.0"?>
<events>
  <event type="track"><userId>fx-1</userId><event>X</event><properties><n>3</n></properties></event>
  <event type="identify"><userId>fx-2</userId><traits><email>fx@example.com</email></traits></event>
</events>
`, "", 2, 0, 0, []string{"fx-1", "fx-2"}},
		}
		for _, f := range files {
			path := writeFile(t, dir, f.name, f.content)
			reasons := filepath.Join(dir, f.name+".reasons")
			args := []string{path}
			if f.format != "" {
				args = []string{"--format", f.format, path}
			}
			code, stdout, stderr := imp(reasons, args...)
			wantCode := 0
			if f.rejected > 0 {
				wantCode = 2
			}
			if code != wantCode {
				t.Fatalf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", f.name, code, wantCode, stdout, stderr)
			}
			checkSummary(t, stdout, 1, f.rows, f.rows-f.rejected, 0, f.rejected)
			if got := readReasons(t, reasons); len(got) != f.rejected || (f.rejected > 0 && got[0].Line != f.badLine) {
				t.Errorf("%s: reasons %+v, want %d on line %d", f.name, got, f.rejected, f.badLine)
			}
		}
		applied()
		for _, f := range files {
			for _, u := range f.users {
				if _, err := n.profile("user_id:" + u); err != nil {
					t.Errorf("%s: %v", f.name, err)
				}
			}
		}
	})

	t.Run("bad format", func(t *testing.T) {
		good := writeFile(t, dir, "ok.ndjson", `{"type":"identify","userId":"never-imported"}`+"\n")
		cases := []struct {
			name string
			args []string
			want string
		}{
			{"unknown --format", []string{"--format", "yaml", good}, `--format: want csv, json, ndjson or xml, got "yaml"`},
			{"unknown extension", []string{writeFile(t, dir, "data.bin", "x")}, `got "bin"`},
			{"csv without mapping", []string{"--format", "csv", good}, "importer"},
			{"batch bytes", []string{"--batch-bytes", "10", good}, "--batch-bytes"},
			{"missing file", []string{filepath.Join(dir, "nope.csv")}, "nope.csv"},
			{"bad --id", []string{"--id", "email", good}, `--id "email": want column=name`},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				code, stdout, stderr := imp(filepath.Join(dir, "bad.reasons"), c.args...)
				if code != 1 || !strings.Contains(stderr, c.want) || strings.Contains(stderr, "panic") {
					t.Errorf("exit %d stderr %q (stdout %q), want exit 1 and %q", code, stderr, stdout, c.want)
				}
			})
		}
		code, _, stderr := runAurum(t, "import", "--server", n.HTTP, "--no-progress", good)
		if code != 1 || !strings.Contains(stderr, `"source" not set`) {
			t.Errorf("without --source: exit %d stderr %q, want 1 and a required-flag error", code, stderr)
		}
		code, _, stderr = imp(filepath.Join(dir, "bad.reasons"), "--source", "nosuch", good)
		if code != 1 || !strings.Contains(stderr, "unknown source") {
			t.Errorf("unknown source: exit %d stderr %q, want 1 and unknown source", code, stderr)
		}
		applied()
		if _, err := n.profile("user_id:never-imported"); err == nil {
			t.Errorf("a failed import imported a row")
		}
	})
}

// TestImportFirstContact: what a new user met in aurum import. A revenue
// that is not a number is imported with a warning naming the line and the
// property (it was stored without a word, and revenue ignored it); a
// reasons file is never overwritten (an explicit existing one is refused
// before anything is sent, the default name is new per run); no progress
// bar is drawn when the output is not a terminal.
func TestImportFirstContact(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real aurum process")
	}
	parallelProcess(t)
	n := startNode(t, t.TempDir())
	n.createSource("pos")
	dir := t.TempDir()
	csv := writeFile(t, dir, "pos.csv", "card,amount,date\nL1,abc,2024-01-02\nL2,42.5,2024-01-03\n,7,2024-01-04\n")
	args := []string{"import", "--server", n.HTTP, "--source", "pos", "--id", "card=loyalty_id", "--event", "Order Completed",
		"--prop", "amount=revenue", "--timestamp", "date", "--time-layout", "2006-01-02", csv}

	existing := writeFile(t, dir, "old.reasons", "keep me\n")
	code, stdout, stderr := runAurum(t, append(args[:len(args):len(args)], "--reasons", existing)...)
	if code != 1 || !strings.Contains(stderr, "--reasons "+existing+" exists") {
		t.Fatalf("an existing --reasons file: exit %d stdout %q stderr %q, want exit 1 naming it", code, stdout, stderr)
	}
	if b, _ := os.ReadFile(existing); string(b) != "keep me\n" {
		t.Fatalf("the existing reasons file was overwritten: %q", b)
	}

	// The default reasons file, in the working directory, twice.
	var reasonFiles []string
	for round := 1; round <= 2; round++ {
		cmd := exec.Command(aurumBin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "AURUM_ADMIN_TOKEN="+testAdminToken)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Fatalf("round %d: %v, want exit 2 (a row without an identifier)\nstdout: %s\nstderr: %s", round, err, out.String(), errOut.String())
		}
		if round == 1 {
			checkSummary(t, out.String(), 1, 3, 2, 0, 1)
		} else {
			checkSummary(t, out.String(), 1, 3, 0, 2, 1)
		}
		if !strings.Contains(out.String(), ", 1 warnings") {
			t.Errorf("round %d: summary %q does not count the warning", round, out.String())
		}
		if want := csv + " line 2: properties.revenue is \"abc\", not a number"; !strings.Contains(errOut.String(), want) {
			t.Errorf("round %d: stderr %q, want a warning %q", round, errOut.String(), want)
		}
		for _, s := range []string{out.String(), errOut.String()} {
			if strings.ContainsAny(s, "\r\x1b") || strings.Contains(s, "%|") {
				t.Errorf("round %d: a progress bar was drawn into a pipe: %q", round, s)
			}
		}
		m := regexp.MustCompile(`reasons in (\S+)\)`).FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("round %d: summary %q names no reasons file", round, out.String())
		}
		reasonFiles = append(reasonFiles, m[1])
		if got := readReasons(t, filepath.Join(dir, m[1])); len(got) != 1 || got[0].Line != 4 {
			t.Errorf("round %d: reasons %+v, want line 4", round, got)
		}
	}
	if reasonFiles[0] == reasonFiles[1] {
		t.Errorf("both runs wrote the reasons file %s", reasonFiles[0])
	}
}
