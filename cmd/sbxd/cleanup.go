package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/backend/oci"
	"github.com/sbx-dev/sbx/internal/store"
)

func cleanupCmd(opts *options) *cobra.Command {
	return &cobra.Command{
		Use:   "cleanup",
		Short: "Stop every sandbox of the data dir and remove leftovers (run while sbxd is stopped)",
		Long: `Stops every sandbox that belongs to --data-dir: kills its processes and removes
its mounts, cgroups and directories, including leftovers of a crash that
have no record. Records stay (as stopped), so the next request for an id
starts it again. Run it while sbxd is not running.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(opts)
			if err != nil {
				return err
			}
			agent, err := opts.agentPath()
			if err != nil {
				return err
			}
			ociCfg := oci.Config{DataDir: opts.DataDir, AgentPath: agent, Runtime: opts.Runtime, Logger: log}
			if err := opts.networkOptions.apply(&ociCfg); err != nil {
				return err
			}
			be, err := oci.New(ociCfg)
			if err != nil {
				return err
			}
			defer be.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			ids, err := be.List(ctx)
			if err != nil {
				return err
			}
			var errs []error
			for _, id := range ids {
				if err := be.Destroy(ctx, id); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", id, err))
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), "removed", id)
			}
			dbPath := filepath.Join(opts.DataDir, "sbx.db")
			if _, err := os.Stat(dbPath); err == nil {
				st, err := store.Open(dbPath)
				if err != nil {
					return err
				}
				defer st.Close()
				recs, err := st.List(ctx)
				if err != nil {
					return err
				}
				for _, r := range recs {
					if r.Status == api.StatusRunning {
						errs = append(errs, st.SetStatus(ctx, r.ID, api.StatusStopped, r.LastActiveAt))
					}
				}
			}
			return errors.Join(errs...)
		},
	}
}
