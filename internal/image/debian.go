package image

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// debianPopulate builds the root filesystem of p.recipe into root:
//
//  1. debootstrap a minbase of the suite;
//  2. point apt at the mirrors (release, -updates, -security), update and
//     upgrade;
//  3. apt-get install the recipe's packages, without recommends;
//  4. clean up: apt caches and lists, docs, logs, host-specific files.
//
// The packages are installed by apt-get in a chroot rather than by
// debootstrap --include, whose simple dependency ordering fails to
// configure Debian's node-* packages.
//
// Everything runs in a private mount namespace (see inMountNamespace), so
// the chroot's /proc, /sys and /dev mounts, and debootstrap's own, never
// reach the host and vanish when the build ends, however it ends. Policy-rc.d
// keeps package scripts from starting daemons in the tree.
func debianPopulate(ctx context.Context, root string, p *plan) error {
	if os.Geteuid() != 0 {
		return errors.New("building an image needs root: debootstrap, chroot and mounts do")
	}
	debootstrap, err := exec.LookPath("debootstrap")
	if err != nil {
		debootstrap = "/usr/sbin/debootstrap" // not on the PATH of non-root users
		if _, err := os.Stat(debootstrap); err != nil {
			return errors.New("debootstrap is not installed: run \"apt-get install debootstrap\"")
		}
	}
	return inMountNamespace(func() error {
		p.rep.start(stepBootstrap, p.recipe.Suite+" from "+p.mirrors.Main)
		err := p.run(ctx, "", newDebootstrapParser(p.rep).line, nil,
			debootstrap, "--variant=minbase", "--components=main", p.recipe.Suite, root, p.mirrors.Main)
		if err != nil {
			return err
		}
		p.rep.finish(nil)

		p.rep.start(stepUpdate, "")
		if err := configureApt(root, p.recipe.Suite, p.mirrors); err != nil {
			return err
		}
		unmount, err := mountChrootFS(root)
		if err != nil {
			return err
		}
		defer unmount()
		if err := p.apt(ctx, root, 0, 0.4, "update"); err != nil {
			return err
		}
		if err := p.apt(ctx, root, 0.4, 1, "-y", "upgrade"); err != nil {
			return err
		}
		p.rep.finish(nil)

		p.rep.start(stepInstall, fmt.Sprintf("%d packages", len(p.recipe.Packages)))
		args := append([]string{"-y", "--no-install-recommends", "install"}, p.recipe.Packages...)
		if err := p.apt(ctx, root, 0, 1, args...); err != nil {
			return err
		}
		p.rep.finish(nil)

		p.rep.start(stepCleanup, "")
		if err := p.apt(ctx, root, 0, 0.5, "clean"); err != nil {
			return err
		}
		unmount()
		if err := cleanTree(root); err != nil {
			return err
		}
		p.rep.finish(nil)
		return nil
	})
}

// chrootEnv is the environment of commands run in the tree: nothing of the
// caller's leaks in, and package scripts never ask questions.
var chrootEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"LC_ALL=C",
	"DEBIAN_FRONTEND=noninteractive",
	"DEBCONF_NONINTERACTIVE_SEEN=true",
}

// commandEnv is chrootEnv plus the caller's proxy settings, which both
// debootstrap and apt honour.
func commandEnv() []string {
	env := slices.Clone(chrootEnv)
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "http_proxy", "https_proxy", "no_proxy":
			env = append(env, kv)
		}
	}
	return env
}

// apt runs apt-get in the chroot, mapping its machine-readable status (on
// fd 3) onto the running step's fraction between from and to.
func (p *plan) apt(ctx context.Context, root string, from, to float64, args ...string) error {
	base := []string{
		"-q", "-o", "APT::Status-Fd=3", "-o", "Dpkg::Use-Pty=0", "-o", "Acquire::Retries=3",
		"-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
	}
	status := func(line string) {
		// "dlstatus:<n>:<percent>:<text>" while downloading and
		// "pmstatus:<pkg>:<percent>:<text>" while dpkg runs; downloading
		// counts for 40% of an install.
		kind, rest, _ := strings.Cut(line, ":")
		f := strings.SplitN(rest, ":", 3)
		if len(f) != 3 {
			return
		}
		pct, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			return
		}
		switch kind {
		case "dlstatus":
			p.rep.update(from+(to-from)*0.4*pct/100, f[2])
		case "pmstatus":
			p.rep.update(from+(to-from)*(0.4+0.6*pct/100), f[2])
		}
	}
	output := func(line string) {
		if strings.HasPrefix(line, "Get:") || strings.HasPrefix(line, "Hit:") {
			p.rep.update(0, line)
		}
	}
	err := p.run(ctx, root, output, status, "/usr/bin/apt-get", append(base, args...)...)
	if err == nil {
		p.rep.update(to, "")
	}
	return err
}

// run runs a command, chrooted into root unless root is empty, with its
// output going line by line to the build log and to output. If status is
// not nil, the command gets a pipe as fd 3 whose lines go to status.
// The command runs in a process group of its own, killed as a whole when
// ctx is cancelled or when the calling thread dies.
func (p *plan) run(ctx context.Context, root string, output, status func(string), name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = commandEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Chroot: root}
	if root != "" {
		cmd.Dir = "/"
	}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second // a stray daemon must not hold the output pipe open forever
	lw := &lineWriter{fn: func(line string) {
		p.log.line(line)
		if output != nil {
			output(line)
		}
	}}
	cmd.Stdout, cmd.Stderr = lw, lw

	var statusDone chan struct{}
	var statusR *os.File
	if status != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		statusR = r
		cmd.ExtraFiles = []*os.File{w}
		statusDone = make(chan struct{})
		go func() {
			defer close(statusDone)
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				status(sc.Text())
			}
		}()
		defer w.Close()
	}
	fmt.Fprintf(p.log, "\n$ %s\n", strings.Join(cmd.Args, " "))
	err := cmd.Start()
	if err == nil {
		if status != nil {
			cmd.ExtraFiles[0].Close() // the child has it; EOF comes when it and its children exit
		}
		err = cmd.Wait()
	}
	lw.flush()
	if statusR != nil {
		select {
		case <-statusDone:
		case <-time.After(time.Second):
		}
		statusR.Close()
		<-statusDone
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", filepath.Base(name), strings.Join(args[len(args)-min(len(args), 1):], " "), err)
	}
	return nil
}

// lineWriter splits what is written to it into lines (on \n or \r, as
// progress meters use \r) and hands each non-empty line to fn.
type lineWriter struct {
	fn  func(string)
	buf []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexAny(w.buf, "\r\n")
		if i < 0 {
			break
		}
		if line := strings.TrimRight(string(w.buf[:i]), " "); line != "" {
			w.fn(line)
		}
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 { // a very long line: hand it over in pieces
		w.fn(string(w.buf))
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.fn(string(w.buf))
		w.buf = nil
	}
}

// debootstrapParser estimates debootstrap's progress from its "I:" lines:
// each package is retrieved and validated, then extracted (required ones
// only), unpacked and configured.
type debootstrapParser struct {
	rep                                    *reporter
	retrieved, extracted, unpacked, config int
}

// minbasePackages is about how many packages a bookworm minbase has; it
// stands in for the real count until retrieval is over.
const minbasePackages = 90

func newDebootstrapParser(rep *reporter) *debootstrapParser {
	return &debootstrapParser{rep: rep}
}

func (d *debootstrapParser) line(line string) {
	rest, ok := strings.CutPrefix(line, "I: ")
	if !ok {
		return
	}
	verb, pkg, _ := strings.Cut(rest, " ")
	switch verb {
	case "Retrieving":
		if pkg != "InRelease" && pkg != "Release" && pkg != "Packages" {
			d.retrieved++
		}
	case "Extracting":
		d.extracted++
	case "Unpacking":
		d.unpacked++
	case "Configuring":
		d.config++
	default:
		d.rep.update(0, rest)
		return
	}
	n := float64(minbasePackages)
	if d.extracted > 0 { // retrieval is over: the count is known
		n = float64(d.retrieved)
	}
	n = max(n, float64(d.retrieved))
	frac := (0.45*float64(d.retrieved) + 0.10*float64(d.extracted) + 0.20*float64(d.unpacked) + 0.25*float64(d.config)) / n
	d.rep.update(frac, rest)
}

// configureApt points the tree's apt at the mirrors and makes the tree
// safe to install into: no daemons start, no docs are unpacked, the host's
// DNS configuration is available during the build.
func configureApt(root, suite string, m mirrors) error {
	keyring := "/usr/share/keyrings/debian-archive-keyring.gpg"
	signedBy := ""
	if _, err := os.Stat(filepath.Join(root, keyring)); err == nil {
		signedBy = "Signed-By: " + keyring + "\n"
	}
	sources := fmt.Sprintf("Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\n%s", m.Main, suite, suite, signedBy)
	if m.Security != "" {
		sources += fmt.Sprintf("\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\n%s", m.Security, suite, signedBy)
	}
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return fmt.Errorf("read the host's DNS configuration: %w", err)
	}
	files := []struct {
		path string
		mode os.FileMode
		data string
	}{
		{"etc/apt/sources.list", 0o644, ""}, // debootstrap's; replaced by the deb822 file
		{"etc/apt/sources.list.d/debian.sources", 0o644, sources},
		{"usr/sbin/policy-rc.d", 0o755, "#!/bin/sh\n# sbx image build: start no services\nexit 101\n"},
		{"etc/dpkg/dpkg.cfg.d/sbx-slim", 0o644, slimDpkg},
		{"etc/resolv.conf", 0o644, string(resolv)},
	}
	for _, f := range files {
		p := filepath.Join(root, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		_ = os.Remove(p) // may be a symlink; never write through it
		if f.data == "" {
			continue
		}
		if err := os.WriteFile(p, []byte(f.data), f.mode); err != nil {
			return err
		}
	}
	return nil
}

// slimDpkg keeps documentation out of the image (but not copyright
// notices), as Debian's slim container images do.
const slimDpkg = `# sbx images carry no documentation
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
`

// cleanTree removes from a finished tree what only the build needed or what
// would tie the image to the build host, and adds what sandboxes expect.
func cleanTree(root string) error {
	at := func(p string) string { return filepath.Join(root, p) }
	globs := []string{
		"var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/debconf/*-old",
		"var/lib/dpkg/*-old", "var/log/apt/*", "var/log/*.log", "var/log/debootstrap*",
		"usr/share/man/*", "usr/share/info/*", "usr/share/lintian/*",
		"tmp/*", "var/tmp/*", "root/.cache",
	}
	for _, g := range globs {
		matches, err := filepath.Glob(at(g))
		if err != nil {
			return err
		}
		for _, m := range matches {
			if filepath.Base(m) == "partial" || filepath.Base(m) == "lock" {
				continue // apt's own structure
			}
			if err := os.RemoveAll(m); err != nil {
				return err
			}
		}
	}
	// Docs unpacked by debootstrap, before the dpkg exclusions existed.
	docs, _ := filepath.Glob(at("usr/share/doc/*"))
	for _, d := range docs {
		ents, err := os.ReadDir(d)
		if err != nil {
			continue // a symlink to another package's docs, or a file
		}
		for _, e := range ents {
			if e.Name() != "copyright" {
				if err := os.RemoveAll(filepath.Join(d, e.Name())); err != nil {
					return err
				}
			}
		}
	}
	if err := os.Remove(at("usr/sbin/policy-rc.d")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	files := []struct {
		path, data string
	}{
		// sbxd bind-mounts its own resolv.conf; the host's stays out.
		{"etc/resolv.conf", "# replaced by sbx when a sandbox starts\n"},
		{"etc/hostname", "sandbox\n"},
		{"etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"},
	}
	for _, f := range files {
		_ = os.Remove(at(f.path))
		if err := os.WriteFile(at(f.path), []byte(f.data), 0o644); err != nil {
			return err
		}
	}
	if _, err := os.Stat(at("etc/machine-id")); err == nil {
		if err := os.WriteFile(at("etc/machine-id"), nil, 0o444); err != nil {
			return err
		}
	}
	return os.MkdirAll(at("workspace"), 0o755)
}
