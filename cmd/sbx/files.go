package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/client"
	"github.com/sbx-dev/sbx/internal/fstree"
)

// defaultDir is where relative sandbox paths (ID:file) point: the working
// directory of commands.
const defaultDir = "/workspace"

// addFileCommands adds cp, cat, mkdir, mv and watch, and teaches the
// sandbox commands ls and rm the ID:/path form: `sbx ls` lists sandboxes
// and `sbx ls ID:/dir` a directory; `sbx rm ID` destroys a sandbox and
// `sbx rm ID:/file` a file. Sandbox ids cannot contain ':', so the two
// never mix up.
func addFileCommands(root *cobra.Command, g *globals) {
	root.AddCommand(cpCmd(g), catCmd(g), mkdirCmd(g), mvCmd(g), watchCmd(g))
	for _, c := range root.Commands() {
		switch c.Name() {
		case "ls":
			extendLs(c, g)
		case "rm":
			extendRm(c, g)
		}
	}
}

// remote is a path in a sandbox, written ID:/path.
type remote struct {
	id, path string
}

func (r remote) String() string { return r.id + ":" + r.path }

// parseRemote reads ID:/path. A path without a leading '/' is relative to
// /workspace. ok is false for local paths (no ':', or a '/' before it).
func parseRemote(arg string) (r remote, ok bool) {
	id, p, found := strings.Cut(arg, ":")
	if !found || id == "" || strings.Contains(id, "/") {
		return remote{}, false
	}
	if !strings.HasPrefix(p, "/") {
		p = path.Join(defaultDir, p)
	}
	return remote{id: id, path: path.Clean(p)}, true
}

func mustRemote(arg string) (remote, error) {
	r, ok := parseRemote(arg)
	if !ok {
		return r, fmt.Errorf("%q is not a sandbox path; write ID:/path, e.g. demo:/workspace/main.py", arg)
	}
	return r, nil
}

func cpCmd(g *globals) *cobra.Command {
	var (
		quiet, parents bool
		exclude        []string
	)
	cmd := &cobra.Command{
		Use:   "cp SRC DST",
		Short: "Copy files and directories into, out of and between sandboxes",
		Long: `Copy a file or a directory tree. One side (or both) is a sandbox path
written ID:/path; a path without a leading '/' is relative to /workspace.
'-' as a local side is standard input or output (files only).

As with cp -r: if DST is an existing directory, or ends in '/', SRC is copied
into it under its own name; otherwise SRC is copied to DST. A SRC ending in
'/.' copies the directory's content rather than the directory.

Files are streamed, whatever their size, and replace their destination
atomically. Directories travel as one tar stream. A progress bar is shown on
a terminal for large transfers.`,
		Example: `  sbx cp ./data.csv demo:/workspace/          # -> /workspace/data.csv
  sbx cp ./project demo:/workspace/project    # upload a tree
  sbx cp demo:/workspace/out.png .            # download a file
  sbx cp demo:/workspace/build ./build --exclude '*.o'
  tar czf - src | sbx cp - demo:/tmp/src.tgz
  sbx cp demo:/etc/os-release -               # to standard output`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			cp := copier{c: c, quiet: quiet, parents: parents, exclude: exclude}
			src, srcRemote := parseRemote(args[0])
			dst, dstRemote := parseRemote(args[1])
			ctx := cmd.Context()
			switch {
			case srcRemote && dstRemote:
				return cp.between(ctx, src, dst, args[0], args[1])
			case dstRemote:
				return cp.upload(ctx, args[0], dst, args[1])
			case srcRemote:
				return cp.download(ctx, src, args[0], args[1])
			}
			return errors.New("neither side is a sandbox path; write one as ID:/path (for local copies use cp)")
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	f.BoolVarP(&parents, "parents", "p", false, "create missing parent directories of DST")
	f.StringArrayVar(&exclude, "exclude", nil, "leave out paths matching this glob when copying a directory (repeatable), e.g. node_modules or '*.log'")
	return cmd
}

type copier struct {
	c       *client.Client
	quiet   bool
	parents bool
	exclude []string
}

// into reports whether dst names a directory to copy into, by its trailing
// slash or by being one.
func into(arg string, isDir func() bool) bool {
	return strings.HasSuffix(arg, "/") || strings.HasSuffix(arg, "/.") || isDir()
}

// contentsOnly reports SRC/. — copy the directory's content.
func contentsOnly(arg string) bool { return strings.HasSuffix(arg, "/.") || arg == "." }

func (cp copier) upload(ctx context.Context, local string, dst remote, dstArg string) error {
	sb := cp.c.Sandbox(dst.id)
	remoteIsDir := func() bool {
		fi, err := sb.Stat(ctx, dst.path)
		return err == nil && fi.Type == api.FileTypeDirectory
	}
	if local == "-" {
		_, err := sb.WriteFile(ctx, dst.path, os.Stdin, cp.writeOpts(0)...)
		return err
	}
	fi, err := os.Stat(local)
	if err != nil {
		return err
	}
	target := dst.path
	if !(fi.IsDir() && contentsOnly(local)) && into(dstArg, remoteIsDir) {
		target = path.Join(dst.path, filepath.Base(filepath.Clean(local)))
	}
	if !fi.IsDir() {
		f, err := os.Open(local)
		if err != nil {
			return err
		}
		defer f.Close()
		bar := cp.bar(local+" → "+dst.id+":"+target, fi.Size())
		defer bar.done()
		_, err = sb.WriteFile(ctx, target, bar.reader(f), append(cp.writeOpts(fi.Mode()), client.WithSize(fi.Size()))...)
		return err
	}
	if cp.parents {
		if _, err := sb.Mkdir(ctx, path.Dir(target), true); err != nil {
			return err
		}
	}
	excl, err := fstree.ParseGlobs(cp.exclude)
	if err != nil {
		return err
	}
	bar := cp.bar(local+" → "+dst.id+":"+target, cp.treeSize(local, excl))
	defer bar.done()
	pr, pw := io.Pipe()
	go func() {
		_, err := fstree.Write(pw, local, fstree.WriteOptions{Exclude: excl})
		pw.CloseWithError(err)
	}()
	_, err = sb.UploadTar(ctx, target, bar.reader(pr))
	pr.CloseWithError(errors.New("upload ended"))
	return err
}

func (cp copier) writeOpts(mode fs.FileMode) []client.WriteOption {
	var opts []client.WriteOption
	if cp.parents {
		opts = append(opts, client.WithParents())
	}
	if mode != 0 {
		opts = append(opts, client.WithMode(mode&(fs.ModePerm|fs.ModeSticky)))
	}
	return opts
}

// treeSize sums the file sizes under dir for the progress bar; -1 when no
// bar is shown.
func (cp copier) treeSize(dir string, excl *fstree.Globs) int64 {
	if cp.quiet || !isatty.IsTerminal(os.Stderr.Fd()) {
		return -1
	}
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if rel, _ := filepath.Rel(dir, p); rel != "." && excl.Match(filepath.ToSlash(rel)) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func (cp copier) download(ctx context.Context, src remote, srcArg, local string) error {
	sb := cp.c.Sandbox(src.id)
	info, err := sb.Stat(ctx, src.path)
	if err != nil {
		return err
	}
	if info.Type == api.FileTypeSymlink {
		// Copy what the link names, as cp does.
		fr, err := sb.OpenFile(ctx, src.path)
		if err == nil {
			fr.Close()
			info.Type = api.FileTypeFile
		} else if client.ErrorCode(err) == api.CodeIsADirectory {
			info.Type = api.FileTypeDirectory
		} else {
			return err
		}
	}
	localIsDir := func() bool {
		fi, err := os.Stat(local)
		return err == nil && fi.IsDir()
	}
	if info.Type != api.FileTypeDirectory {
		if local == "-" {
			_, err := sb.CopyFile(ctx, src.path, os.Stdout)
			return err
		}
		target := local
		if into(local, localIsDir) {
			target = filepath.Join(local, info.Name)
		}
		return cp.downloadFile(ctx, sb, src.path, target)
	}
	if local == "-" {
		return fmt.Errorf("%s is a directory; copy it to a local directory, not to standard output", srcArg)
	}
	target := local
	if !contentsOnly(srcArg) && into(local, localIsDir) {
		target = filepath.Join(local, info.Name)
	}
	if cp.parents {
		err = os.MkdirAll(target, 0o755)
	} else if err = os.Mkdir(target, 0o755); errors.Is(err, fs.ErrExist) && localIsDirPath(target) {
		err = nil
	}
	if err != nil {
		return err
	}
	rc, err := sb.DownloadTar(ctx, src.path, cp.exclude...)
	if err != nil {
		return err
	}
	defer rc.Close()
	bar := cp.bar(srcArg+" → "+target, -1)
	defer bar.done()
	_, err = fstree.Extract(bar.reader(rc), target, fstree.ExtractOptions{})
	return err
}

func localIsDirPath(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// downloadFile streams sandbox file p to local path target through a
// temporary file beside it, so a failed download leaves target as it was.
func (cp copier) downloadFile(ctx context.Context, sb *client.Sandbox, p, target string) error {
	fr, err := sb.OpenFile(ctx, p)
	if err != nil {
		return err
	}
	defer fr.Close()
	if cp.parents {
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(target), ".sbx-cp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	bar := cp.bar(sb.ID+":"+p+" → "+target, fr.Size)
	n, err := io.Copy(tmp, bar.reader(fr))
	bar.done()
	if err == nil && fr.Size >= 0 && n != fr.Size {
		err = fmt.Errorf("%s:%s: transfer ended after %d of %d bytes", sb.ID, p, n, fr.Size)
	}
	if err == nil {
		if info, serr := sb.Stat(ctx, p); serr == nil {
			if m, merr := api.ParseMode(info.Mode); merr == nil {
				err = tmp.Chmod(m & (fs.ModePerm | fs.ModeSticky))
			}
		} else {
			err = tmp.Chmod(0o644)
		}
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), target)
	}
	return err
}

// between copies from one sandbox path to another, streaming through this
// process.
func (cp copier) between(ctx context.Context, src, dst remote, srcArg, dstArg string) error {
	from, to := cp.c.Sandbox(src.id), cp.c.Sandbox(dst.id)
	info, err := from.Stat(ctx, src.path)
	if err != nil {
		return err
	}
	dstIsDir := func() bool {
		fi, err := to.Stat(ctx, dst.path)
		return err == nil && fi.Type == api.FileTypeDirectory
	}
	target := dst.path
	if !(info.Type == api.FileTypeDirectory && contentsOnly(srcArg)) && into(dstArg, dstIsDir) {
		target = path.Join(dst.path, info.Name)
	}
	bar := cp.bar(src.String()+" → "+dst.id+":"+target, info.Size)
	defer bar.done()
	if info.Type != api.FileTypeDirectory {
		fr, err := from.OpenFile(ctx, src.path)
		if err != nil {
			return err
		}
		defer fr.Close()
		var opts []client.WriteOption
		if m, err := api.ParseMode(info.Mode); err == nil {
			opts = cp.writeOpts(m)
		}
		if fr.Size >= 0 {
			opts = append(opts, client.WithSize(fr.Size))
		}
		_, err = to.WriteFile(ctx, target, bar.reader(fr), opts...)
		return err
	}
	bar.total = -1
	rc, err := from.DownloadTar(ctx, src.path, cp.exclude...)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = to.UploadTar(ctx, target, bar.reader(rc))
	return err
}

// progressBar draws a transfer's progress on standard error, when that is
// a terminal and the transfer is large.
type progressBar struct {
	label string
	total int64 // -1: unknown
	on    bool

	mu    sync.Mutex
	n     int64
	start time.Time
	last  time.Time
	drawn bool
}

// barThreshold is the size from which a transfer gets a progress bar.
const barThreshold = 8 << 20

func (cp copier) bar(label string, total int64) *progressBar {
	return &progressBar{label: label, total: total, start: time.Now(),
		on: !cp.quiet && isatty.IsTerminal(os.Stderr.Fd())}
}

func (b *progressBar) reader(r io.Reader) io.Reader {
	if !b.on {
		return r
	}
	return &countingReader{r: r, b: b}
}

type countingReader struct {
	r io.Reader
	b *progressBar
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.b.add(int64(n))
	return n, err
}

func (b *progressBar) add(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n += n
	if now := time.Now(); now.Sub(b.last) >= 100*time.Millisecond {
		b.last = now
		b.draw(false)
	}
}

func (b *progressBar) draw(final bool) {
	large := b.total >= barThreshold || (b.total < 0 && b.n >= barThreshold)
	// A first frame after 200 ms, so that the rate means something.
	if !b.on || (!b.drawn && (!large || time.Since(b.start) < 200*time.Millisecond)) {
		return
	}
	b.drawn = true
	secs := time.Since(b.start).Seconds()
	rate := float64(b.n) / max(secs, 1e-3)
	var line string
	if b.total > 0 {
		frac := min(float64(b.n)/float64(b.total), 1)
		const width = 24
		fill := int(frac * width)
		bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
		if fill < width {
			bar = bar[:fill] + ">" + bar[fill+1:]
		}
		eta := ""
		if !final && rate > 0 {
			eta = " ETA " + time.Duration(float64(b.total-b.n)/rate*float64(time.Second)).Round(time.Second).String()
		}
		line = fmt.Sprintf("%3.0f%% [%s] %s / %s  %s/s%s", frac*100, bar, humanBytes(b.n), humanBytes(b.total), humanBytes(int64(rate)), eta)
	} else {
		line = fmt.Sprintf("%s  %s/s", humanBytes(b.n), humanBytes(int64(rate)))
	}
	label := b.label
	if len(label) > 40 {
		label = "…" + label[len(label)-39:]
	}
	fmt.Fprintf(os.Stderr, "\r\033[K%s  %s", label, line)
	if final {
		fmt.Fprintln(os.Stderr)
	}
}

func (b *progressBar) done() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.drawn {
		b.draw(true)
		b.drawn = false
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

func catCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cat ID:/path...",
		Short: "Print files from a sandbox",
		Example: `  sbx cat demo:/etc/os-release
  sbx cat demo:out.txt        # /workspace/out.txt`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			for _, a := range args {
				r, err := mustRemote(a)
				if err != nil {
					return err
				}
				if _, err := c.Sandbox(r.id).CopyFile(cmd.Context(), r.path, os.Stdout); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func mkdirCmd(g *globals) *cobra.Command {
	var parents bool
	cmd := &cobra.Command{
		Use:     "mkdir ID:/path...",
		Short:   "Create directories in a sandbox",
		Example: `  sbx mkdir -p demo:/workspace/a/b/c`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			for _, a := range args {
				r, err := mustRemote(a)
				if err != nil {
					return err
				}
				if _, err := c.Sandbox(r.id).Mkdir(cmd.Context(), r.path, parents); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&parents, "parents", "p", false, "create missing parents; an existing directory is fine")
	return cmd
}

func mvCmd(g *globals) *cobra.Command {
	var noClobber bool
	cmd := &cobra.Command{
		Use:   "mv ID:/from ID:/to",
		Short: "Move or rename a file or directory within a sandbox",
		Long: `Move ID:/from to ID:/to. As with mv, if ID:/to is an existing directory the
entry moves into it under its own name. Both paths are in the same sandbox.`,
		Example: `  sbx mv demo:/workspace/a.txt demo:/workspace/b.txt
  sbx mv demo:/tmp/build demo:/workspace/`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			from, err := mustRemote(args[0])
			if err != nil {
				return err
			}
			to, err := mustRemote(args[1])
			if err != nil {
				return err
			}
			if from.id != to.id {
				return fmt.Errorf("%s and %s are in different sandboxes; use sbx cp, then sbx rm", args[0], args[1])
			}
			sb := c.Sandbox(from.id)
			target := to.path
			if fi, err := sb.Stat(cmd.Context(), to.path); err == nil && fi.Type == api.FileTypeDirectory {
				target = path.Join(to.path, path.Base(from.path))
			}
			info, err := sb.MoveRequest(cmd.Context(), api.MoveRequest{From: from.path, To: target, NoOverwrite: noClobber})
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(info)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&noClobber, "no-clobber", "n", false, "fail instead of replacing an existing destination")
	return cmd
}

func watchCmd(g *globals) *cobra.Command {
	var opts client.WatchOptions
	cmd := &cobra.Command{
		Use:   "watch ID:/path",
		Short: "Print changes to files in a sandbox as they happen",
		Long: `Watch a directory (or a file) and print one line per change: create,
modify, delete, move (from -> to) or attrib. resync means events were lost;
re-read the directory. Stops on Ctrl-C or when the directory is deleted.
With --json, each event is printed as a JSON object on its own line.`,
		Example: `  sbx watch -r demo:/workspace --exclude node_modules --exclude .git
  sbx watch demo:/workspace --include '*.py' --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			r, err := mustRemote(args[0])
			if err != nil {
				return err
			}
			for ev, err := range c.Sandbox(r.id).Watch(cmd.Context(), r.path, opts) {
				if err != nil {
					return err
				}
				if g.json {
					if err := printJSONLine(ev); err != nil {
						return err
					}
					continue
				}
				switch ev.Type {
				case api.WatchWatching:
					fmt.Fprintf(os.Stderr, "watching %s (Ctrl-C to stop)\n", ev.Path)
				case api.WatchMove:
					fmt.Printf("%-8s %s -> %s\n", ev.Type, ev.From, ev.To)
				case api.WatchResync:
					fmt.Printf("%-8s %s: %s\n", ev.Type, ev.Path, ev.Message)
				default:
					suffix := ""
					if ev.IsDirectory {
						suffix = "/"
					}
					fmt.Printf("%-8s %s%s\n", ev.Type, ev.Path, suffix)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&opts.Recursive, "recursive", "r", false, "watch subdirectories too, new ones included")
	f.StringArrayVar(&opts.Include, "include", nil, "report only paths matching this glob (repeatable)")
	f.StringArrayVar(&opts.Exclude, "exclude", nil, "leave out paths matching this glob (repeatable)")
	return cmd
}

func printJSONLine(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(b, '\n'))
	return err
}

// extendLs makes `sbx ls ID:/path` list files, leaving `sbx ls` as it is.
func extendLs(ls *cobra.Command, g *globals) {
	listSandboxes := ls.RunE
	var recursive, all, long bool
	ls.Use = "ls [ID:/path]"
	ls.Short = "List sandboxes, or the files of ID:/path"
	ls.Long = `Without arguments, list sandboxes. With ID:/path, list that directory of
the sandbox (a path without a leading '/' is relative to /workspace).`
	ls.Example = `  sbx ls
  sbx ls demo:/workspace -l
  sbx ls -Ra demo:/workspace/src --json`
	ls.Args = cobra.MaximumNArgs(1)
	ls.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			if recursive || all || long {
				return errors.New("-R, -a and -l apply to file listings: sbx ls ID:/path")
			}
			return listSandboxes(cmd, args)
		}
		r, err := mustRemote(args[0])
		if err != nil {
			return err
		}
		c, err := g.client()
		if err != nil {
			return err
		}
		entries, err := c.Sandbox(r.id).ListFiles(cmd.Context(), r.path, client.ListOptions{Recursive: recursive, IncludeHidden: all})
		if err != nil {
			return err
		}
		if g.json {
			if entries == nil {
				entries = []api.FileInfo{}
			}
			return printJSON(entries)
		}
		for _, e := range entries {
			name := e.Name
			if recursive {
				name = strings.TrimPrefix(strings.TrimPrefix(e.Path, r.path), "/")
			}
			if e.Type == api.FileTypeDirectory {
				name += "/"
			}
			if !long {
				fmt.Println(name)
				continue
			}
			if e.SymlinkTarget != "" {
				name += " -> " + e.SymlinkTarget
			}
			fmt.Printf("%s %10s  %s  %s\n", e.Permissions, humanBytes(e.Size), e.ModifiedAt.Local().Format("Jan _2 15:04"), name)
		}
		return nil
	}
	f := ls.Flags()
	f.BoolVarP(&recursive, "recursive", "R", false, "list subdirectories too (file listings)")
	f.BoolVarP(&all, "all", "a", false, "include entries whose names start with '.' (file listings)")
	f.BoolVarP(&long, "long", "l", false, "show permissions, size and modification time (file listings)")
}

// extendRm makes `sbx rm ID:/path` delete files, leaving `sbx rm ID` as it
// is.
func extendRm(rm *cobra.Command, g *globals) {
	destroy := rm.RunE
	var recursive bool
	rm.Use = "rm ID... | rm [-r] ID:/path..."
	rm.Short = "Destroy sandboxes, or delete files in them (ID:/path)"
	rm.Long = `With sandbox ids, destroy those sandboxes and everything in them
(idempotent). With ID:/path arguments, delete those files; a directory
needs -r.`
	rm.Example = `  sbx rm demo                         # destroys the sandbox
  sbx rm demo:/workspace/out.txt       # deletes one file
  sbx rm -r demo:/workspace/build`
	rm.RunE = func(cmd *cobra.Command, args []string) error {
		var files []remote
		for _, a := range args {
			if r, ok := parseRemote(a); ok {
				files = append(files, r)
			}
		}
		switch {
		case len(files) == 0 && recursive:
			return errors.New("-r applies to file paths (ID:/path); to destroy a sandbox, sbx rm ID")
		case len(files) == 0:
			return destroy(cmd, args)
		case len(files) != len(args):
			return errors.New("mix of sandbox ids and file paths; destroy sandboxes and delete files in separate commands")
		}
		c, err := g.client()
		if err != nil {
			return err
		}
		for _, f := range files {
			if err := c.Sandbox(f.id).Remove(cmd.Context(), f.path, recursive); err != nil {
				return err
			}
		}
		return nil
	}
	rm.Flags().BoolVarP(&recursive, "recursive", "r", false, "delete directories and their content (file paths only)")
}
