package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/aurumcdp/aurum/cluster"
	"github.com/spf13/cobra"
)

// newClusterCmd is `aurum cluster`: the state of a cluster and changes to
// its membership, through any node's HTTP API (changes are sent on to the
// Raft leader).
func newClusterCmd() *cobra.Command {
	var server, token string
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Show a cluster (leader, nodes, partition owners) and add or remove nodes",
		Long: `Show the cluster a node belongs to (serve --cluster) and change its membership.

  aurum cluster status                          leader, nodes (up/down, Raft role), partitions (owner, epoch, applied)
  aurum cluster add n4 --cluster cluster.yaml   add the node described by n4's entry in the file
  aurum cluster add n4 --http 10.0.0.4:8080 --raft 10.0.0.4:7030 --nats 10.0.0.4:4222 --routes 10.0.0.4:6222
  aurum cluster remove n4                       its partitions move to the others (epoch + 1)

A node to add is started first with serve --cluster FILE --node NAME --join (FILE listing it).
Membership changes are made by the Raft leader; sent to another node, the CLI sends them again to
the leader it names.`,
	}
	addClientFlags(cmd, &server, &token)

	var asJSON bool
	var output string
	status := &cobra.Command{
		Use:   "status",
		Short: "Print the cluster as this node sees it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asJSON {
				output = outputJSON
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := newClient(server, token)
			if err != nil {
				return err
			}
			var st cluster.Status
			if err := c.do(cmd.Context(), http.MethodGet, "/v1/cluster", nil, &st); err != nil {
				return err
			}
			if output == outputJSON {
				return printJSON(cmd.OutOrStdout(), st)
			}
			return printClusterStatus(cmd, st)
		},
	}
	status.Flags().BoolVar(&asJSON, "json", false, "the same as --output json")
	_ = status.Flags().MarkHidden("json")
	addOutputFlag(status, &output)

	var file string
	var nc cluster.NodeConfig
	add := &cobra.Command{
		Use:   "add NODE",
		Short: "Add a node to the cluster; partitions rebalance",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			nc.Name = args[0]
			if file != "" {
				cfg, err := cluster.LoadConfig(file)
				if err != nil {
					return fmt.Errorf("--cluster: %w", err)
				}
				fromFile, ok := cfg.Node(nc.Name)
				if !ok {
					return fmt.Errorf("--cluster: %s has no node named %q", file, nc.Name)
				}
				nc = fromFile
			}
			if nc.HTTP == "" || nc.Raft == "" {
				return errors.New("the node's addresses are needed: --cluster FILE (with its entry) or --http and --raft")
			}
			body, err := json.Marshal(nc)
			if err != nil {
				return err
			}
			return clusterChange(cmd, server, token, http.MethodPost, "/v1/cluster/nodes", body)
		},
	}
	add.Flags().StringVar(&file, "cluster", "", "cluster file holding the node's entry")
	add.Flags().StringVar(&nc.HTTP, "http", "", "the node's HTTP address (host:port)")
	add.Flags().StringVar(&nc.Raft, "raft", "", "the node's Raft address (host:port)")
	add.Flags().StringVar(&nc.NATS, "nats", "", "the node's NATS client address (host:port)")
	add.Flags().StringVar(&nc.Routes, "routes", "", "the node's NATS routes address (host:port)")

	remove := &cobra.Command{
		Use:   "remove NODE",
		Short: "Remove a node from the cluster; its partitions move to the others",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return clusterChange(cmd, server, token, http.MethodDelete, "/v1/cluster/nodes/"+url.PathEscape(args[0]), nil)
		},
	}
	cmd.AddCommand(status, add, remove)
	return cmd
}

// clusterChange sends a membership change, and sends it again to the
// leader when the node answers that it is not the leader.
func clusterChange(cmd *cobra.Command, server, token, method, path string, body []byte) error {
	for hop := 0; ; hop++ {
		c, err := newClient(server, token)
		if err != nil {
			return err
		}
		var st cluster.Status
		err = c.do(cmd.Context(), method, path, body, &st)
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusConflict && hop < 3 {
			var nl struct {
				Leader     string `json:"leader"`
				LeaderHTTP string `json:"leader_http"`
			}
			if json.Unmarshal(ae.Body, &nl) == nil && nl.LeaderHTTP != "" {
				u, perr := url.Parse(server)
				if perr != nil {
					return err
				}
				u.Host = nl.LeaderHTTP
				fmt.Fprintf(cmd.ErrOrStderr(), "sending to the leader %s (%s)\n", nl.Leader, u.Host)
				server = u.String()
				continue
			}
		}
		if err != nil {
			return err
		}
		return printClusterStatus(cmd, st)
	}
}

func printClusterStatus(cmd *cobra.Command, st cluster.Status) error {
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "leader: %s\n\n", dash(st.Leader))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tHTTP\tSTATE\tRAFT")
	for _, n := range st.Nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Name, dash(n.HTTP), n.State, n.Raft)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tOWNER\tSTANDBYS\tEPOCH\tAPPLIED")
	for _, p := range st.Partitions {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\n", p.ID, dash(p.Owner), dash(strings.Join(p.Standbys, ",")), p.Epoch, p.Applied)
	}
	return tw.Flush()
}
