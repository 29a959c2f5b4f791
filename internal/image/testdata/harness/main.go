package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

type options struct{ DataDir, ImagesDir string }

func (o *options) imagesDir() string {
	if o.ImagesDir != "" {
		return o.ImagesDir
	}
	return o.DataDir + "/images"
}

func main() {
	opts := &options{}
	root := &cobra.Command{Use: "sbxd", SilenceUsage: true, SilenceErrors: true}
	root.PersistentFlags().StringVar(&opts.DataDir, "data-dir", "/var/lib/sbx", "")
	root.PersistentFlags().StringVar(&opts.ImagesDir, "images-dir", "", "")
	root.AddCommand(imageCmd(opts))
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "sbxd:", err)
		os.Exit(1)
	}
}
