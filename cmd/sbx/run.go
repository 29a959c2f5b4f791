package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/client"
)

// langAliases maps what --lang accepts to API languages.
var langAliases = map[string]string{
	"python": api.LanguagePython, "py": api.LanguagePython, "python3": api.LanguagePython,
	"javascript": api.LanguageJavaScript, "js": api.LanguageJavaScript, "node": api.LanguageJavaScript,
	"typescript": api.LanguageTypeScript, "ts": api.LanguageTypeScript,
}

// langByExt picks the language of a source file when --lang is not given.
var langByExt = map[string]string{
	".py": api.LanguagePython, ".js": api.LanguageJavaScript, ".mjs": api.LanguageJavaScript,
	".cjs": api.LanguageJavaScript, ".ts": api.LanguageTypeScript,
}

func parseLang(s string) (string, error) {
	if l, ok := langAliases[strings.ToLower(s)]; ok {
		return l, nil
	}
	return "", fmt.Errorf("--lang %q: use python, javascript or typescript", s)
}

func runCmd(g *globals) *cobra.Command {
	var (
		code, lang, context, out string
		timeout                  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "run ID [-c CODE | FILE]",
		Short: "Run Python, JavaScript or TypeScript code in a sandbox's code interpreter",
		Long: `Run code in a stateful interpreter inside sandbox ID, notebook style: variables,
imports and functions persist from one run to the next in the same context.
Without --context the code runs in the language's default context.

Output is printed as the code runs; the value of the last expression and
display() calls are printed as text. Images (Matplotlib figures, PNG, JPEG,
SVG) are saved to --out DIR when given. An error in the code prints its
traceback and exits with status 1.

Python needs IPython in the sandbox's image: create the sandbox with the
python image (sbx create ID --image python), which also has NumPy, pandas,
Matplotlib and TypeScript.`,
		Example: `  sbx create nb --image python
  sbx run nb -c 'x = 21'
  sbx run nb -c 'x * 2'                                  # 42
  sbx run nb --out plots -c 'import matplotlib.pyplot as plt; plt.plot([1, 3, 2])'
  sbx run nb analysis.py                                 # language from the extension
  sbx run nb --lang ts -c 'const n: number = 6 * 7; n'
  echo 'console.log(await Promise.resolve("hi"))' | sbx run nb --lang js -`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := api.RunCodeRequest{Context: context, TimeoutMs: timeout.Milliseconds()}
			if lang != "" {
				l, err := parseLang(lang)
				if err != nil {
					return err
				}
				req.Language = l
			}
			switch {
			case len(args) == 2 && cmd.Flags().Changed("code"):
				return errors.New("pass the code with -c or as FILE, not both")
			case len(args) == 2:
				b, err := readSource(args[1])
				if err != nil {
					return err
				}
				req.Code = string(b)
				if req.Language == "" && req.Context == "" {
					req.Language = langByExt[strings.ToLower(filepath.Ext(args[1]))]
				}
			case cmd.Flags().Changed("code"):
				req.Code = code
			default:
				return errors.New("no code: pass -c CODE, a FILE, or - to read standard input")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			sb := c.Sandbox(args[0])
			if g.json {
				res, err := sb.RunCodeRequest(cmd.Context(), req)
				if err != nil {
					return explainCodeErr(err)
				}
				if err := printJSON(res); err != nil {
					return err
				}
				if res.Error != nil {
					return exitError{code: 1}
				}
				return nil
			}
			return streamRun(cmd, sb, req, out)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&code, "code", "c", "", "code to run")
	f.StringVarP(&lang, "lang", "l", "", "python, javascript or typescript (default: from FILE's extension, else python)")
	f.StringVar(&context, "context", "", "code context to run in (see sbx context create)")
	f.StringVarP(&out, "out", "o", "", "save image results (png, jpeg, svg) to this directory")
	f.DurationVar(&timeout, "timeout", 0, "interrupt the code after this long, e.g. 30s")
	return cmd
}

func readSource(name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(name)
}

// explainCodeErr adds what to do to errors a user can fix.
func explainCodeErr(err error) error {
	if client.IsInterpreterNotAvailable(err) {
		return fmt.Errorf("%w\n(create the sandbox with the python image: sbx create ID --image python)", err)
	}
	return err
}

// streamRun runs req, printing output as it arrives and saving images at
// the end, when their names can carry the execution count.
func streamRun(cmd *cobra.Command, sb *client.Sandbox, req api.RunCodeRequest, outDir string) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	var images []api.CodeResult
	var failed bool
	for ev, err := range sb.RunCodeStream(cmd.Context(), req) {
		if err != nil {
			return explainCodeErr(err)
		}
		switch {
		case ev.Type == api.CodeEventStdout:
			io.WriteString(stdout, ev.Text)
		case ev.Type == api.CodeEventStderr:
			io.WriteString(stderr, ev.Text)
		case ev.Result != nil:
			r := ev.Result
			hasImage := r.PNG != "" || r.JPEG != "" || r.SVG != ""
			switch {
			case hasImage:
				// Its text is a placeholder such as "<Figure size …>".
				images = append(images, *r)
			case r.Text != "":
				fmt.Fprintln(stdout, r.Text)
			default:
				fmt.Fprintf(stdout, "[result with %s]\n", strings.Join(r.Formats(), ", "))
			}
		case ev.Error != nil:
			failed = true
			if len(ev.Error.Traceback) > 0 {
				fmt.Fprintln(stderr, strings.Join(ev.Error.Traceback, "\n"))
			} else {
				fmt.Fprintf(stderr, "%s: %s\n", ev.Error.Name, ev.Error.Message)
			}
		case ev.Complete != nil:
			done := ev.Complete
			if done.StateLost {
				fmt.Fprintf(stderr, "sbx: context %s had lost its state (its interpreter had died) and started afresh\n", done.Context)
			}
			if done.TimedOut {
				fmt.Fprintf(stderr, "sbx: the code was interrupted at its timeout\n")
			}
			if err := saveImages(stderr, outDir, done, images); err != nil {
				return err
			}
		}
	}
	if failed {
		return exitError{code: 1}
	}
	return nil
}

// saveImages writes each image result to dir as CONTEXT-COUNT-N.EXT, or
// says how to get them.
func saveImages(w io.Writer, dir string, done *api.CodeComplete, images []api.CodeResult) error {
	if len(images) == 0 {
		return nil
	}
	if dir == "" {
		fmt.Fprintf(w, "sbx: %d image result(s) not shown; pass --out DIR to save them\n", len(images))
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i, r := range images {
		var data []byte
		var ext string
		var err error
		switch {
		case r.PNG != "":
			data, err = r.PNGBytes()
			ext = "png"
		case r.JPEG != "":
			data, err = r.JPEGBytes()
			ext = "jpg"
		default:
			data, ext = []byte(r.SVG), "svg"
		}
		if err != nil {
			return err
		}
		name := filepath.Join(dir, fmt.Sprintf("%s-%d-%d.%s", done.Context, done.ExecutionCount, i+1, ext))
		if err := os.WriteFile(name, data, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(w, "sbx: saved %s\n", name)
	}
	return nil
}

// contextCmd is "sbx context": create, list and delete code contexts.
func contextCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "context",
		Aliases: []string{"contexts"},
		Short:   "Manage code contexts (stateful interpreters for sbx run)",
	}
	var (
		lang, cwd string
		env       []string
	)
	create := &cobra.Command{
		Use:   "create ID --lang LANG",
		Short: "Start a code context in sandbox ID and print its id",
		Example: `  cid=$(sbx context create nb --lang python --cwd /workspace/project)
  sbx run nb --context "$cid" -c 'import os; os.getcwd()'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := parseLang(lang)
			if err != nil {
				return err
			}
			req := api.CreateCodeContextRequest{Language: l, Cwd: cwd}
			if req.Env, err = parseKeyValues("--env", env); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			cc, err := c.Sandbox(args[0]).CreateCodeContext(cmd.Context(), req)
			if err != nil {
				return explainCodeErr(err)
			}
			if g.json {
				return printJSON(cc)
			}
			fmt.Fprintln(cmd.OutOrStdout(), cc.ID)
			return nil
		},
	}
	create.Flags().StringVarP(&lang, "lang", "l", "python", "python, javascript or typescript")
	create.Flags().StringVarP(&cwd, "cwd", "w", "", "working directory (default /workspace)")
	create.Flags().StringArrayVarP(&env, "env", "e", nil, "environment variable KEY=VALUE (repeatable)")

	ls := &cobra.Command{
		Use:     "ls ID",
		Aliases: []string{"list"},
		Short:   "List the code contexts of sandbox ID",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			list, err := c.Sandbox(args[0]).CodeContexts(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(api.CodeContextList{Contexts: list})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tLANGUAGE\tCWD\tCREATED")
			for _, cc := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", cc.ID, cc.Language, cc.Cwd, cc.CreatedAt.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	rm := &cobra.Command{
		Use:   "rm ID CONTEXT...",
		Short: "Delete code contexts of sandbox ID, stopping their interpreters",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			sb := c.Sandbox(args[0])
			for _, id := range args[1:] {
				if err := sb.DeleteCodeContext(cmd.Context(), id); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.AddCommand(create, ls, rm)
	return cmd
}
