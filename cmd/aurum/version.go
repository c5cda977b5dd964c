package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// commit is the build's commit when the linker sets it (make build:
// -ldflags "-X main.commit=..."). The go command records it itself
// (vcs.revision) in a git checkout, but not in a git worktree, whose .git
// is a file, nor with -buildvcs=false.
var commit string

// versionString is this build's version line (formatVersion).
func versionString() string {
	bi, _ := debug.ReadBuildInfo()
	return formatVersion(bi, commit)
}

// formatVersion is the module version, the commit the build was made from
// (vcs.revision, "+modified" when the work tree had changes, else the
// linker's), its time and the Go version.
func formatVersion(bi *debug.BuildInfo, linked string) string {
	if bi == nil {
		bi = &debug.BuildInfo{Main: debug.Module{Version: "(unknown)"}, GoVersion: "go?"}
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	rev := settings["vcs.revision"]
	switch {
	case rev != "" && settings["vcs.modified"] == "true":
		rev += "+modified"
	case rev == "" && linked != "":
		rev = linked
	case rev == "":
		rev = "unknown (make build records it)"
	}
	v := fmt.Sprintf("%s commit %s", bi.Main.Version, rev)
	if t := settings["vcs.time"]; t != "" {
		v += " (" + t + ")"
	}
	return v + " " + bi.GoVersion
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and the commit of this build (also: aurum --version)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "aurum", versionString())
			return err
		},
	}
}
