package main

import (
	"fmt"
	"net/http"

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
equal digests: a crash-and-restart must give the digest of a clean rebuild. The node must be
stopped (the state store is locked while it runs), or use --server to ask a running node
for the digest at its current position.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var d engine.StateDigest
			if server != "" {
				c, err := newClient(server, token)
				if err != nil {
					return err
				}
				if err := c.do(cmd.Context(), http.MethodGet, "/v1/digest", nil, &d); err != nil {
					return err
				}
			} else {
				var err error
				if d, err = engine.DigestState(dataDir); err != nil {
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
	cmd.Flags().StringVar(&dataDir, "data-dir", "./aurum-data", "data directory of a stopped node")
	cmd.Flags().StringVar(&server, "server", "", "ask a running node instead (its API URL; uses $AURUM_ADMIN_TOKEN or --token)")
	cmd.Flags().StringVar(&token, "token", "", "admin token for --server (default $AURUM_ADMIN_TOKEN)")
	cmd.Flags().BoolVar(&perPart, "partitions", false, "also print the digest of the global key ranges and of each partition")
	return cmd
}
