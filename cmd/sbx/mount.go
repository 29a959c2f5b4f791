package main

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sbx-dev/sbx/api"
)

func mountCmd(g *globals) *cobra.Command {
	var req api.MountRequest
	cmd := &cobra.Command{
		Use:   "mount ID BUCKET PATH",
		Short: "Copy an S3 bucket prefix into a sandbox directory, synced back on demand",
		Long: `Copies the objects under --prefix of BUCKET into directory PATH of sandbox ID
(absent or empty). Read-write mounts (the default) upload changes on
'sbx mount sync' and 'sbx unmount'; --read-only never writes to the bucket.
There is no live view: changes on either side travel only on sync.
Any failure (unreachable server, wrong credentials, a missing bucket, a
broken download) is an error, and leaves nothing behind.

Credentials come from --access-key/--secret-key, else $AWS_ACCESS_KEY_ID and
$AWS_SECRET_ACCESS_KEY; the daemon keeps them in memory only.`,
		Example: `  sbx mount dev datasets /data --endpoint https://s3.example.com --prefix v2/ --read-only
  sbx mount sync dev /data
  sbx unmount dev /data`,
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			req.Bucket, req.Path = args[1], args[2]
			if req.AccessKeyID == "" && req.SecretAccessKey == "" {
				req.AccessKeyID, req.SecretAccessKey = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
			}
			m, err := c.Sandbox(args[0]).MountBucket(cmd.Context(), req)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(m)
			}
			fmt.Printf("mounted %s/%s at %s:%s (%d objects)\n", m.Bucket, m.Prefix, args[0], m.Path, m.Objects)
			for _, k := range m.Skipped {
				fmt.Fprintf(os.Stderr, "skipped %s: the key is also a directory of other keys\n", k)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Endpoint, "endpoint", "", "S3 server, https://host[:port] (required)")
	f.StringVar(&req.Prefix, "prefix", "", "key prefix to mount, e.g. data/")
	f.StringVar(&req.Region, "region", "", "bucket region (default us-east-1)")
	f.StringVar(&req.AccessKeyID, "access-key", "", "access key id (default $AWS_ACCESS_KEY_ID)")
	f.StringVar(&req.SecretAccessKey, "secret-key", "", "secret access key (default $AWS_SECRET_ACCESS_KEY)")
	f.BoolVar(&req.PathStyle, "path-style", false, "address the bucket as host/bucket (most self-hosted servers)")
	f.BoolVar(&req.ReadOnly, "read-only", false, "never write to the bucket")
	cmd.AddCommand(mountLsCmd(g), mountSyncCmd(g))
	return cmd
}

func mountLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ls ID",
		Short: "List the bucket mounts of a sandbox",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			list, err := c.Sandbox(args[0]).Mounts(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(list)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PATH\tBUCKET\tPREFIX\tMODE\tOBJECTS\tLAST SYNC")
			for _, m := range list {
				mode := "rw"
				if m.ReadOnly {
					mode = "ro"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", m.Path, m.Bucket, m.Prefix, mode, m.Objects, m.LastSyncAt.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
}

func mountSyncCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "sync ID PATH",
		Short: "Sync a bucket mount with its bucket (both ways for read-write mounts)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.Sandbox(args[0]).SyncMount(cmd.Context(), args[1])
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(res)
			}
			fmt.Printf("synced %s: %d uploaded, %d deleted in the bucket; %d downloaded, %d removed in the sandbox\n",
				args[1], res.Uploaded, res.Deleted, res.Downloaded, res.Removed)
			if res.Reverted > 0 {
				noun := "changes"
				if res.Reverted == 1 {
					noun = "change"
				}
				fmt.Printf("read-only: reverted %d local %s to the bucket's state\n", res.Reverted, noun)
			}
			for _, p := range res.Conflicts {
				fmt.Fprintf(os.Stderr, "conflict: %s changed on both sides\n", p)
			}
			return nil
		},
	}
}

func unmountCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "unmount ID PATH",
		Short: "Sync a read-write bucket mount back and remove its directory",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.Sandbox(args[0]).Unmount(cmd.Context(), args[1]); err != nil {
				return err
			}
			if !g.json {
				fmt.Println("unmounted", args[1])
			}
			return nil
		},
	}
}
