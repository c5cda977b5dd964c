package identity

import (
	"crypto/sha256"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// ddCase is one command of a data-driven file in testdata/, run by
// github.com/cockroachdb/datadriven (go test -rewrite rewrites the expected
// output):
//
//	cmd arg arg...
//	optional input lines
//	----
//	expected output lines
//
// Cases are separated by blank lines; lines starting with # between cases are
// comments.
type ddCase struct {
	cmd   string
	args  []string
	input string
}

// caseOf is the harness's view of a datadriven case: the arguments as
// written on the command line.
func caseOf(d *datadriven.TestData) ddCase {
	c := ddCase{cmd: d.Cmd, input: d.Input}
	for _, a := range d.CmdArgs {
		c.args = append(c.args, a.String())
	}
	return c
}

// testHash is the test's stand-in for the keyed identifier hash.
func testHash(typ, value string) []byte {
	s := sha256.Sum256([]byte(typ + ":" + value))
	return s[:IDLen]
}

func testEventID(name string) []byte {
	s := sha256.Sum256([]byte("event/" + name))
	return s[:IDLen]
}

func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		h := newHarness(t, DefaultConfig())
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			out, err := h.run(caseOf(d))
			if err != nil {
				t.Fatalf("%s: %v", d.Pos, err)
			}
			return out
		})
	})
}
