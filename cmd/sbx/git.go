package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sbx-dev/sbx/api"
)

func gitCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "git",
		Short: "Git operations inside a sandbox",
	}
	cmd.AddCommand(gitCloneCmd(g))
	return cmd
}

func gitCloneCmd(g *globals) *cobra.Command {
	var (
		req        api.GitCheckoutRequest
		tokenStdin bool
	)
	cmd := &cobra.Command{
		Use:   "clone ID URL",
		Short: "Clone a repository into a sandbox",
		Long: `Clone URL into sandbox ID (creating or waking it), by default into
/workspace/<repo name>.

Private repositories over https: put the credentials in the URL
(https://user:TOKEN@host/owner/repo.git), or give the token on stdin
(--token-stdin) or in $SBX_GIT_TOKEN, with --username if the host needs one.
They are used for this clone only: never logged, never stored in the
sandbox, and the clone's origin is the URL without them.`,
		Example: `  sbx git clone demo https://github.com/owner/repo.git --branch main --depth 1
  sbx git clone demo https://gitlab.example.com/team/app.git --dir /workspace/app --username oauth2 --token-stdin < token.txt`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.URL = args[1]
			switch {
			case tokenStdin:
				line, err := bufio.NewReader(os.Stdin).ReadString('\n')
				if err != nil && line == "" {
					return fmt.Errorf("--token-stdin: reading the token from stdin: %w", err)
				}
				req.Token = strings.TrimSpace(line)
			case os.Getenv("SBX_GIT_TOKEN") != "":
				req.Token = os.Getenv("SBX_GIT_TOKEN")
			}
			if err := req.Validate(); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.Sandbox(args[0]).GitCheckout(cmd.Context(), req)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(res)
			}
			ref := res.Branch
			if ref == "" {
				ref = "detached HEAD"
			}
			fmt.Printf("cloned %s into %s (%s at %.12s) in %d ms\n", res.URL, res.TargetDir, ref, res.Commit, res.DurationMs)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&req.Branch, "branch", "b", "", "branch or tag to check out (default: the remote's HEAD)")
	f.IntVar(&req.Depth, "depth", 0, "shallow clone of this many commits (0: whole history)")
	f.StringVar(&req.TargetDir, "dir", "", "target directory, absolute or relative to /workspace (default /workspace/<repo name>)")
	f.StringVar(&req.Username, "username", "", "user name for the token (default "+api.DefaultGitUsername+")")
	f.BoolVar(&tokenStdin, "token-stdin", false, "read an access token for https from stdin")
	return cmd
}
