package main

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sbx-dev/sbx/api"
)

func createCmd(g *globals) *cobra.Command {
	var (
		req        api.CreateSandboxRequest
		sleepAfter time.Duration
		env        []string
		network    api.Network
	)
	cmd := &cobra.Command{
		Use:   "create ID",
		Short: "Create and start a sandbox (optional: exec creates one on first use)",
		Long: `Create and start sandbox ID with explicit options. If it already exists
with the same options this succeeds and changes nothing; with different
options it fails with CONFLICT.

Instance types: lite (1/16 vCPU, 256 MiB), basic (1/4 vCPU, 1 GiB),
standard-1 (1/2 vCPU, 4 GiB, the default), standard-2 (1 vCPU, 6 GiB),
standard-3 (2 vCPU, 8 GiB), standard-4 (4 vCPU, 12 GiB).

Network: the internet by default, never the host, other sandboxes, private
or link-local (metadata) ranges. --network none leaves only loopback;
--allow limits outbound traffic to the listed addresses, CIDRs or host
names; --deny refuses them.`,
		Example: `  sbx create build-7 --instance-type standard-2 --env CI=1 --keep-alive
  sbx create offline --network none
  sbx create fetcher --allow pypi.org --allow files.pythonhosted.org`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			req.SleepAfter = api.Duration(sleepAfter)
			if network.Mode != "" || len(network.Allow) > 0 || len(network.Deny) > 0 {
				req.Network = &network
			}
			if req.Env, err = parseKeyValues("--env", env); err != nil {
				return err
			}
			sb, err := c.Sandbox(args[0]).Create(cmd.Context(), &req)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(sb)
			}
			fmt.Printf("%s %s (%s, image %s)\n", sb.ID, sb.Status, sb.InstanceType, sb.Image)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Image, "image", "", "image name (default: the daemon's default image)")
	f.StringVarP(&req.InstanceType, "instance-type", "t", "", "size: lite, basic, standard-1 … standard-4")
	f.DurationVar(&sleepAfter, "sleep-after", 0, "idle time before the sandbox is stopped (default 10m)")
	f.BoolVar(&req.KeepAlive, "keep-alive", false, "never stop the sandbox for idleness")
	f.BoolVar(&req.Persistent, "persistent", false, "keep the whole file system across stops and daemon restarts (sbx rm --purge discards it)")
	f.StringArrayVarP(&env, "env", "e", nil, "environment variable KEY=VALUE for every command (repeatable)")
	f.StringVar(&network.Mode, "network", "", "network mode: internet (default) or none")
	f.StringArrayVar(&network.Allow, "allow", nil, "only allow outbound traffic to this address, CIDR or host name (repeatable)")
	f.StringArrayVar(&network.Deny, "deny", nil, "refuse outbound traffic to this address, CIDR or host name (repeatable)")
	return cmd
}

func lsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List sandboxes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			list, err := c.List(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				if list == nil {
					list = []api.Sandbox{}
				}
				return printJSON(list)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATUS\tTYPE\tIMAGE\tLAST ACTIVE\tCREATED")
			for _, sb := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", sb.ID, sb.Status, sb.InstanceType, sb.Image,
					ago(sb.LastActiveAt), ago(sb.CreatedAt))
			}
			return tw.Flush()
		},
	}
}

func ago(t time.Time) string {
	d := time.Since(t).Round(time.Second)
	if d < time.Second {
		return "just now"
	}
	return d.String() + " ago"
}

func statusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status ID",
		Short: "Show one sandbox (never creates or wakes it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			sb, err := c.Sandbox(args[0]).Get(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(sb)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "id:\t%s\nstatus:\t%s\nimage:\t%s\ninstance type:\t%s\nsleep after:\t%s\nkeep alive:\t%v\ncreated:\t%s\nlast active:\t%s\n",
				sb.ID, sb.Status, sb.Image, sb.InstanceType, time.Duration(sb.SleepAfter), sb.KeepAlive,
				sb.CreatedAt.Format(time.RFC3339), sb.LastActiveAt.Format(time.RFC3339))
			return tw.Flush()
		},
	}
}

func stopCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "stop ID...",
		Short: "Stop sandboxes now (the next request starts them again)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			for _, id := range args {
				if _, err := c.Sandbox(id).Stop(cmd.Context()); err != nil {
					return err
				}
				if !g.json {
					fmt.Println(id, "stopped")
				}
			}
			return nil
		},
	}
}

func rmCmd(g *globals) *cobra.Command {
	var purge bool
	cmd := &cobra.Command{
		Use:     "rm ID...",
		Aliases: []string{"destroy"},
		Short:   "Destroy sandboxes and everything in them (idempotent)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			for _, id := range args {
				destroy := c.Sandbox(id).Destroy
				if purge {
					destroy = c.Sandbox(id).Purge
				}
				if err := destroy(cmd.Context()); err != nil {
					return err
				}
				if !g.json {
					fmt.Println(id, "destroyed")
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&purge, "purge", false, "also delete the stored file system of a persistent sandbox")
	return cmd
}
