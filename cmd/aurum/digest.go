package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/aurumcdp/aurum/engine"
	"github.com/spf13/cobra"
)

func newDigestCmd() *cobra.Command {
	var dataDir, server, token string
	var perPart bool
	cmd := &cobra.Command{
		Use:   "digest",
		Short: "Print a digest of the projection state (of a stopped node, or a running one with --server)",
		Long: `Print the SHA-256 digest of every projection key and value (keychain, GCR, dedup table,
sources) and the applied log position. Two data directories built from the same log have
equal digests: a crash-and-restart must give the digest of a clean rebuild.

With --data-dir the digest is of a stopped node's data directory (the state store is locked
while the node runs); a directory that holds no Aurum state is refused. Otherwise, with
--server or $AURUM_SERVER, a running node is asked for the digest at its current position;
with neither, ./aurum-data is read.`,
		Example: `  aurum digest --data-dir ./aurum-data
  aurum digest --server http://127.0.0.1:8080 --partitions`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			offline := cmd.Flags().Changed("data-dir") || server == ""
			if cmd.Flags().Changed("data-dir") && cmd.Flags().Changed("server") {
				return errors.New("give --data-dir (a stopped node) or --server (a running one), not both")
			}
			var d engine.StateDigest
			if offline {
				if err := checkDataDir(dataDir); err != nil {
					return err
				}
				var err error
				if d, err = engine.DigestState(dataDir); err != nil {
					return err
				}
			} else {
				c, err := newClient(server, token)
				if err != nil {
					return err
				}
				if err := c.do(cmd.Context(), http.MethodGet, "/v1/digest", nil, &d); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s applied=%d\n", d.All, d.Applied)
			if perPart {
				fmt.Fprintf(cmd.OutOrStdout(), "global %s\n", d.Global)
				for i, p := range d.Partitions {
					fmt.Fprintf(cmd.OutOrStdout(), "partition %d %s\n", i, p)
				}
			}
			return nil
		},
	}
	addClientFlagsDefault(cmd, &server, &token, "") // no server named: a data directory is read
	cmd.Flags().StringVar(&dataDir, "data-dir", "./aurum-data", "data directory of a stopped node")
	cmd.Flags().BoolVar(&perPart, "partitions", false, "also print the digest of the global key ranges and of each partition")
	return cmd
}

// checkDataDir refuses a directory that holds no Aurum state (missing,
// empty, or some other directory), before anything is created in it.
func checkDataDir(dir string) error {
	fi, err := os.Stat(filepath.Join(dir, "state"))
	if err == nil && fi.IsDir() {
		return nil
	}
	if _, derr := os.Stat(dir); derr != nil {
		return fmt.Errorf("--data-dir %s: no such directory (give the data directory of a stopped node, or --server for a running one)", dir)
	}
	return fmt.Errorf("--data-dir %s holds no Aurum state (no state directory): give the data directory of a stopped node, or --server for a running one", dir)
}
