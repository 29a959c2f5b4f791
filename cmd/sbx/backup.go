package main

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sbx-dev/sbx/api"
)

func backupCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Back up directories of sandboxes and restore them into any sandbox",
		Long: `Backups are compressed, checksummed archives of a sandbox directory, kept
in the daemon's blob store (a local directory or an S3 bucket). A restore
replaces the target directory whole and atomically: if anything fails,
including the archive's checksum, the directory is left as it was.`,
	}
	cmd.AddCommand(backupCreateCmd(g), backupLsCmd(g), backupRestoreCmd(g), backupRmCmd(g))
	return cmd
}

func backupCreateCmd(g *globals) *cobra.Command {
	var req api.CreateBackupRequest
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "create ID DIR",
		Short: "Back up directory DIR of sandbox ID",
		Example: `  sbx backup create dev /workspace --exclude node_modules --gitignore --ttl 72h
  sbx backup create dev /workspace --name before-upgrade`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			req.Dir, req.TTL = args[1], api.Duration(ttl)
			b, err := c.Sandbox(args[0]).CreateBackup(cmd.Context(), req)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(b)
			}
			fmt.Printf("%s %s:%s %s\n", b.ID, b.Sandbox, b.Dir, humanBytes(b.Size))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Name, "name", "", "label shown in listings")
	f.StringArrayVar(&req.Excludes, "exclude", nil, "glob to leave out, repeatable (node_modules, *.log, build/*.o)")
	f.BoolVar(&req.GitIgnore, "gitignore", false, "leave out what the .gitignore files in the tree ignore")
	f.DurationVar(&ttl, "ttl", 0, "delete the backup after this long (default: keep until sbx backup rm)")
	return cmd
}

func backupLsCmd(g *globals) *cobra.Command {
	var sandbox string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List backups, newest first",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			list, err := c.Backups(cmd.Context(), sandbox)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(list)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSANDBOX\tDIR\tNAME\tSIZE\tCREATED\tEXPIRES")
			for _, b := range list {
				exp := "never"
				if b.ExpiresAt != nil {
					exp = b.ExpiresAt.Local().Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", b.ID, b.Sandbox, b.Dir, b.Name, humanBytes(b.Size),
					b.CreatedAt.Local().Format(time.DateTime), exp)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&sandbox, "sandbox", "", "only backups taken from this sandbox")
	return cmd
}

func backupRestoreCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "restore BACKUP ID [DIR]",
		Short: "Restore a backup into sandbox ID (at DIR, default the directory it was taken from)",
		Long: `Replaces the content of DIR in sandbox ID with the backup, atomically: the
archive is extracted beside DIR, verified, and swapped in with one rename.`,
		Example: `  sbx backup restore bk-3f2a… dev
  sbx backup restore bk-3f2a… review-42 /workspace/baseline`,
		Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			dir := ""
			if len(args) == 3 {
				dir = args[2]
			}
			res, err := c.Sandbox(args[1]).RestoreBackup(cmd.Context(), args[0], dir)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(res)
			}
			fmt.Printf("restored %s into %s:%s (%d files, %d directories, %d symlinks, %s)\n",
				res.Backup, args[1], res.Dir, res.Files, res.Directories, res.Symlinks, humanBytes(res.Bytes))
			return nil
		},
	}
}

func backupRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm BACKUP...",
		Short: "Delete backups",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			for _, bid := range args {
				if err := c.DeleteBackup(cmd.Context(), bid); err != nil {
					return err
				}
				if !g.json {
					fmt.Println(bid, "deleted")
				}
			}
			return nil
		},
	}
}
