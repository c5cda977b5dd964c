// Command aurum runs and operates Aurum, the customer data platform.
//
//	aurum demo                       run a node fed by a synthetic store, with live counts
//	aurum serve                      run a node (embedded NATS + Pebble under --data-dir)
//	aurum source add NAME            create an ingest source and print its write key
//	aurum import --source S FILE...  load history files (csv, json, ndjson, xml)
//	aurum profile get REF            print a Golden Customer Record
//	aurum audience add NAME --rule R define an audience (see docs/rules.md)
//	aurum replay                     rebuild the projections from the log, then swap
//	aurum digest                     digest of the projections (replays must agree)
//	aurum privacy erase IDENT        erase a person (crypto-shredding); status, export
//	aurum audit                      the audit log of management actions
//	aurum token add --name N --role R  create an API token (admin, editor, viewer, privacy)
//	aurum user add --name N --role R   create a person who logs in (password + TOTP)
//	aurum version                    the version and commit of this build (or --version)
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "aurum:", err)
		os.Exit(1)
	}
}

// exitError ends the process with a code after its message was printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "aurum",
		Short:         "Aurum: an open-source customer data platform",
		Long:          "Aurum ingests customer events (Segment-compatible HTTP API, NATS, batch files), unifies them into one Golden Customer Record per person and keeps them on a replayable log.",
		Version:       versionString(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("aurum {{.Version}}\n")
	root.AddCommand(newServeCmd(), newSourceCmd(), newImportCmd(), newProfileCmd(), newDeadLettersCmd(), newDigestCmd(), newReplayCmd(), newSnapshotCmd(), newDemoCmd(), newAudienceCmd(), newPrivacyCmd(), newAuditCmd(), newTokenCmd(), newUserCmd(), newDestinationCmd(), newClusterCmd(), newModelCmd(), newIdentityCmd(), newExportCmd(), newVersionCmd())
	return root
}
