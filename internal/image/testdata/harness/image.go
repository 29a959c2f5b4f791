package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sbx-dev/sbx/internal/image"
)

// imageCmd is "sbxd image": build, list and remove the root filesystems
// sandboxes run on.
func imageCmd(opts *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Build, list and remove sandbox images",
	}
	cmd.AddCommand(imageBuildCmd(opts), imageLsCmd(opts), imageRmCmd(opts))
	return cmd
}

func recipeHelp() string {
	var b strings.Builder
	for _, r := range image.Recipes() {
		fmt.Fprintf(&b, "  %-10s %s\n", r.Name, r.Description)
	}
	return b.String()
}

func imageBuildCmd(opts *options) *cobra.Command {
	var bo image.BuildOptions
	cmd := &cobra.Command{
		Use:   "build [NAME]",
		Short: "Build an image with debootstrap (default NAME: default)",
		Long: `Build the image NAME from the recipe of the same name (or --recipe) with
debootstrap, from the Debian mirror in the host's apt sources (or --mirror).
An image that is up to date is not rebuilt unless --force is given. The
build happens aside and replaces the image atomically; an interrupted build
leaves nothing behind that is used.

Recipes:
` + recipeHelp(),
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := "default"
			if len(args) == 1 {
				name = args[0]
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			bo.Progress = os.Stderr
			store := &image.Store{Dir: opts.imagesDir()}
			_, err := store.Build(ctx, name, bo)
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVar(&bo.Force, "force", false, "rebuild even if the image is up to date")
	f.StringVar(&bo.Recipe, "recipe", "", "recipe to build (default: the image name)")
	f.StringVar(&bo.Mirror, "mirror", "", "Debian archive URL (default: from the host's apt sources)")
	f.StringVar(&bo.SecurityMirror, "security-mirror", "", `Debian security archive URL, or "none" (default: from the host's apt sources)`)
	return cmd
}

func imageLsCmd(opts *options) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List built images",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			store := &image.Store{Dir: opts.imagesDir()}
			infos, err := store.List()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if infos == nil {
					infos = []image.Info{}
				}
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(infos)
			}
			if len(infos) == 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "no images in %s; build one with \"sbxd image build\"\n", opts.imagesDir())
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tRECIPE\tSIZE\tCREATED\tPACKAGES")
			for _, i := range infos {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", i.Name, i.Recipe, sizeString(i.SizeBytes),
					i.Created.Local().Format(time.DateTime), len(i.Packages))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func imageRmCmd(opts *options) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"remove"},
		Short:   "Remove images",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store := &image.Store{Dir: opts.imagesDir()}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			for _, name := range args {
				if err := store.Remove(ctx, name); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), name)
			}
			return nil
		},
	}
}

func sizeString(n int64) string {
	const mib = 1 << 20
	if n >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/mib)
}
