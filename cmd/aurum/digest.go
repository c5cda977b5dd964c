package main

import (
	"encoding/hex"
	"fmt"

	"github.com/aurumcdp/aurum/engine"
	"github.com/spf13/cobra"
)

func newDigestCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "digest",
		Short: "Print a digest of the projection state of a stopped node",
		Long: `Print the SHA-256 digest of every projection key and value (keychain, GCR, dedup table,
sources) and the applied log position. Two data directories built from the same log have
equal digests: a crash-and-restart must give the digest of a clean rebuild. The node must be
stopped (the state store is locked while it runs).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, applied, err := engine.DigestState(dataDir)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s applied=%d\n", hex.EncodeToString(d), applied)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "./aurum-data", "data directory of a stopped node")
	return cmd
}
