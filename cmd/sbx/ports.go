package main

import (
	"fmt"
	"os"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/client"
)

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || api.ValidatePort(p) != nil {
		return 0, fmt.Errorf("port %q: use a TCP port from 1 to 65535", s)
	}
	return p, nil
}

func exposeCmd(g *globals) *cobra.Command {
	var name, token string
	cmd := &cobra.Command{
		Use:   "expose ID PORT",
		Short: "Expose a port of a sandbox at preview URLs and print them",
		Long: `Expose PORT inside sandbox ID (creating or waking it) and print its preview
URLs. Anyone with a URL can reach the port; the URLs carry a random token.

  host  http://PORT-ID-TOKEN.localhost:7070/   the one to use: *.localhost
        resolves to this machine in browsers; elsewhere the daemon's
        --preview-domain needs a wildcard DNS record
  port  http://127.0.0.1:NNNNN/?sbx_preview_token=TOKEN    a listener of its own, for
        machines without wildcard DNS; the first visit sets a cookie
  path  http://127.0.0.1:7070/preview/ID/PORT/TOKEN/   last resort: the app's
        absolute links (/static/app.js) break under it

Exposing a port again prints the same URLs while the sandbox runs. When the
sandbox stops (idle, sbx stop, sbx rm) its URLs answer 410 Gone.`,
		Example: `  sbx exec demo -- 'python3 -m http.server 8080 >/dev/null 2>&1 &'
  sbx expose demo 8080
  sbx expose demo 5173 --name vite --json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			port, err := parsePort(args[1])
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			var opts []client.ExposeOption
			if name != "" {
				opts = append(opts, client.WithPortName(name))
			}
			if token != "" {
				opts = append(opts, client.WithPreviewToken(token))
			}
			ep, err := c.Sandbox(args[0]).ExposePort(cmd.Context(), port, opts...)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(ep)
			}
			fmt.Println(ep.URL)
			tw := tabwriter.NewWriter(os.Stderr, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "  host:\t%s\n", ep.URLs.Host)
			if ep.URLs.Port != "" {
				fmt.Fprintf(tw, "  port:\t%s\n", ep.URLs.Port)
			}
			fmt.Fprintf(tw, "  path:\t%s\t(absolute links break)\n", ep.URLs.Path)
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "label shown by sbx ports")
	cmd.Flags().StringVar(&token, "preview-token", "", "use this URL token (8-32 of a-z, 0-9) instead of a random one")
	return cmd
}

func portsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ports ID",
		Short:   "List the exposed ports of a sandbox (never creates or wakes it)",
		Example: `  sbx ports demo --json`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ports, err := c.Sandbox(args[0]).Ports(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				if ports == nil {
					ports = []api.ExposedPort{}
				}
				return printJSON(ports)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PORT\tNAME\tURL\tEXPOSED")
			for _, p := range ports {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", p.Port, p.Name, p.URL, ago(p.ExposedAt))
			}
			return tw.Flush()
		},
	}
}

func unexposeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "unexpose ID PORT",
		Short: "Stop serving a port's preview URLs (idempotent)",
		Long: `Stop serving the preview URLs of PORT in sandbox ID: they answer 410 Gone.
Exposing the port again while the sandbox runs brings the same URLs back.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			port, err := parsePort(args[1])
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.Sandbox(args[0]).UnexposePort(cmd.Context(), port); err != nil {
				return err
			}
			if !g.json {
				fmt.Printf("%s port %d unexposed\n", args[0], port)
			}
			return nil
		},
	}
}
