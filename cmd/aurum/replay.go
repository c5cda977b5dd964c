package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/aurumcdp/aurum/engine"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

func newReplayCmd() *cobra.Command {
	var server, token, from, output, dataDir, memLimit string
	var only []string
	var dryRun, noProgress bool
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Rebuild the projections from the log while the node keeps serving",
		Long: `Rebuild every projection (GCR, identity, audiences) from the log into a fresh set beside the
live one, while the node keeps serving. When the rebuild has caught up, it is swapped in
atomically. A progress bar shows log entries/s and the ETA. Outputs the replay derives are never
re-emitted.

--from start (default) replays the whole log. --from snapshot starts from the latest snapshot
(aurum snapshot create); --from SEQ or --from TIME (RFC 3339) start from the latest snapshot at
or before that log position or time.

--dry-run reports what would differ at the same log position (keys, profiles, audience
memberships that would enter or exit) and swaps nothing.

The outcome is printed as a table (status, positions, rate, the dry run's differences), or
with --output json as the API's status (GET /v1/replay).

--projections gcr,audiences limits the swap (and the comparison) to those projections. The
replay always runs the whole state machine, because audiences read the GCR and the GCR reads
identity; the other projections keep their live state. Outputs that the live state decided but
has not yet published are carried over, so none is lost.

With --data-dir the replay is offline, of a stopped node: its whole log is applied into a
temporary state store (removed afterwards; the node's own state is not touched) and the digest
of the rebuilt projections is printed beside the log position, the outputs derived (none is
published) and the rate. It equals "aurum digest --data-dir" of a node whose state is
consistent with its log. --memory-limit (e.g. 512MiB, 2GiB; only offline: a running node's
replay runs within its own aurum serve --memory-limit) sizes the replay's caches, batches and the
Go runtime's soft limit as it does for serve; same default: $GOMEMLIMIT if set, else 80% of
the cgroup memory limit, else half the physical memory.`,
		Example: `  aurum replay --data-dir ./aurum-data --memory-limit 1GiB   # a stopped node, offline: prints the rebuilt digest`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if cmd.Flags().Changed("data-dir") {
				for _, name := range []string{"server", "from", "dry-run", "projections"} {
					if cmd.Flags().Changed(name) {
						return fmt.Errorf("--%s: not with --data-dir (an offline replay of a stopped node)", name)
					}
				}
				return runOfflineReplay(cmd, dataDir, memLimit, output)
			}
			if cmd.Flags().Changed("memory-limit") {
				return errors.New("--memory-limit: only with --data-dir (an offline replay); a running node's replay runs within its own aurum serve --memory-limit")
			}
			c, err := newClient(server, token)
			if err != nil {
				return err
			}
			body, _ := json.Marshal(engine.RebuildOptions{From: from, DryRun: dryRun, Projections: only})
			var st engine.RebuildStatus
			if err := c.do(cmd.Context(), http.MethodPost, "/v1/replay", body, &st); err != nil {
				return err
			}
			return followReplay(cmd.Context(), cmd, c, noProgress, output)
		},
	}
	addOutputFlag(cmd, &output)
	addClientFlags(cmd, &server, &token)
	cmd.Flags().StringVar(&from, "from", "start", "start, snapshot, a log sequence or an RFC 3339 time")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "report what would differ; swap nothing, emit nothing")
	cmd.Flags().StringSliceVar(&only, "projections", nil, "rebuild only these projections (gcr, audiences); the others keep their live state (default all)")
	cmd.Flags().BoolVar(&noProgress, "no-progress", false, "print status lines instead of a progress bar")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "replay a stopped node's log offline, from its data directory (the node's state is not touched)")
	cmd.Flags().StringVar(&memLimit, "memory-limit", "", "with --data-dir: resident memory the replay may use, e.g. 512MiB or 2GiB: sizes its caches and batches and sets the Go runtime's soft limit (default $GOMEMLIMIT, else 80% of the cgroup's memory limit, else half the physical memory; at least 256MiB)")
	return cmd
}

// offlineReplay is what `aurum replay --data-dir` prints.
type offlineReplay struct {
	Applied          uint64  `json:"applied"`
	Digest           string  `json:"digest"`
	Outputs          int     `json:"outputs"`
	Seconds          float64 `json:"seconds"`
	EntriesPerSecond float64 `json:"entries_per_second"`
	MemoryLimit      string  `json:"memory_limit"`
	MemoryLimitFrom  string  `json:"memory_limit_from"`
}

// runOfflineReplay replays the log of the stopped node in dataDir into a
// temporary store (engine.Replay) within the memory limit flag (as serve
// reads it) and prints the outcome.
func runOfflineReplay(cmd *cobra.Command, dataDir, memFlag, output string) error {
	if err := checkDataDir(dataDir); err != nil {
		return err
	}
	limit, from, err := memoryLimit(memFlag, readMachineMemory())
	if err != nil {
		return err
	}
	// The Go runtime's soft limit, as aurum serve sets it: what the limit
	// leaves beside Pebble's memory outside the Go heap.
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(engine.MemorySizesFor(limit).GoLimit))
	start := time.Now()
	res, err := engine.Replay(cmd.Context(), engine.ReplayOptions{DataDir: dataDir, MemoryLimit: limit})
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	out := offlineReplay{Applied: res.Applied, Digest: hex.EncodeToString(res.Digest), Outputs: res.Outputs,
		Seconds: secs, MemoryLimit: formatSize(limit), MemoryLimitFrom: from}
	if secs > 0 {
		out.EntriesPerSecond = float64(res.Applied) / secs
	}
	raw, err := json.Marshal(out)
	if err != nil {
		return err
	}
	return printOutput(cmd.OutOrStdout(), output, raw, fieldRows)
}

// followReplay polls the replay's status, drawing a progress bar, until it
// is done or failed, then prints the outcome.
func followReplay(ctx context.Context, cmd *cobra.Command, c *client, noProgress bool, output string) error {
	var bar *progressbar.ProgressBar
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		var raw json.RawMessage
		if err := c.do(ctx, http.MethodGet, "/v1/replay", nil, &raw); err != nil {
			return err
		}
		var st engine.RebuildStatus
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("the node's replay status: %w", err)
		}
		total := int64(max(st.Target, st.Applied)) - int64(st.From) + 1
		done := int64(st.Applied) - int64(st.From) + 1
		switch {
		case noProgress:
			fmt.Fprintln(cmd.ErrOrStderr(), replayLine(st))
		case total > 0:
			if bar == nil {
				bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(cmd.ErrOrStderr()),
					progressbar.OptionSetDescription("replay"), progressbar.OptionShowCount(), progressbar.OptionShowIts(),
					progressbar.OptionSetItsString("entries"), progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(100*time.Millisecond))
			}
			bar.ChangeMax64(total)
			_ = bar.Set64(max(done, 0))
		}
		switch st.Status {
		case "done":
			if bar != nil {
				_ = bar.Finish()
				fmt.Fprintln(cmd.ErrOrStderr())
			}
			return printOutput(cmd.OutOrStdout(), output, raw, fieldRows)
		case "failed":
			if bar != nil {
				fmt.Fprintln(cmd.ErrOrStderr())
			}
			return fmt.Errorf("replay failed: %s", st.Error)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// replayLine is the status line of --no-progress: log entries (the unit
// of a replay's position and rate), an ETA only once there is a rate, and
// a dry run's last phase is "comparing" (it swaps nothing).
func replayLine(st engine.RebuildStatus) string {
	status, kind := st.Status, "replay"
	if st.DryRun {
		kind = "replay (dry run)"
		if status == "swapping" {
			status = "comparing"
		}
	}
	eta := "eta -"
	switch {
	case st.Status == "running" && st.Rate > 0:
		eta = fmt.Sprintf("eta %.0fs", st.ETA)
	case st.Status != "running":
		eta = ""
	}
	return strings.TrimSpace(fmt.Sprintf("%s %s: %d/%d entries  %.0f entries/s  %s", kind, status, st.Applied, st.Target, st.Rate, eta))
}

func newSnapshotCmd() *cobra.Command {
	var server, token string
	cmd := &cobra.Command{Use: "snapshot", Short: "Snapshots of the projections with their log position"}
	addClientFlags(cmd, &server, &token)
	cmd.AddCommand(&cobra.Command{
		Use:   "create",
		Short: "Snapshot the projections now (a replay can start from it)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient(server, token)
			if err != nil {
				return err
			}
			var out any
			if err := c.do(cmd.Context(), http.MethodPost, "/v1/snapshots", nil, &out); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), out)
		},
	}, newListCmd("list", "List snapshots", cobra.NoArgs, &server, &token,
		func([]string) string { return "/v1/snapshots" },
		func(raw []byte) ([]string, [][]string, error) {
			var out struct {
				Snapshots []engine.SnapshotInfo `json:"snapshots"`
			}
			err := json.Unmarshal(raw, &out)
			rows := make([][]string, len(out.Snapshots))
			for i, sn := range out.Snapshots {
				rows[i] = []string{strconv.FormatUint(sn.Seq, 10), rfc3339(sn.Created), sn.Path}
			}
			return []string{"SEQ", "CREATED", "PATH"}, rows, err
		}))
	return cmd
}
